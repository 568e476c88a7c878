package gateway

import "sync"

// queue holds a connection's outbound frames: a list of blocks of
// maxBatch frames, taken from a pool as frames come and given back as they
// leave. A connection with nothing queued holds no block, and steady use
// allocates none (a channel of SendQueue frames would hold SendQueue*24
// bytes per connection, queued or not). It is not safe for concurrent use:
// Conn.mu guards it.
type queue struct {
	head, tail *block
	n          int32 // at most SendQueue
	bytes      int32 // the frames' lengths, summed: at most SendBytes or one frame
}

// block is a run of queued frames: frames[start:end].
type block struct {
	frames     [maxBatch][]byte
	start, end int
	next       *block
}

var blocks = sync.Pool{New: func() any { return new(block) }}

func (q *queue) len() int { return int(q.n) }

func (q *queue) push(f []byte) {
	if q.tail == nil || q.tail.end == len(q.tail.frames) {
		b := blocks.Get().(*block)
		if q.tail == nil {
			q.head = b
		} else {
			q.tail.next = b
		}
		q.tail = b
	}
	q.tail.frames[q.tail.end] = f
	q.tail.end++
	q.n++
	q.bytes += int32(len(f))
}

// front returns the frames at the head of the queue that are stored
// together: at least one when the queue is not empty, at most maxBatch. They
// stay queued until drop.
func (q *queue) front() [][]byte {
	if q.head == nil {
		return nil
	}
	return q.head.frames[q.head.start:q.head.end]
}

// drop removes the first n frames of front.
func (q *queue) drop(n int) {
	b := q.head
	for _, f := range b.frames[b.start : b.start+n] {
		q.bytes -= int32(len(f))
	}
	clear(b.frames[b.start : b.start+n])
	b.start += n
	q.n -= int32(n)
	if b.start < b.end {
		return
	}
	q.head = b.next
	if q.head == nil {
		q.tail = nil
	}
	*b = block{}
	blocks.Put(b)
}

// reset drops every frame.
func (q *queue) reset() {
	for q.head != nil {
		q.drop(len(q.front()))
	}
}
