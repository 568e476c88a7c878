package cluster

import (
	"context"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/remote"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// metrics makes the node's collectors. protoactor's remote counts
// nothing, so the remote messages are counted here, on its gRPC streams:
// each batch a node sends or receives carries some messages (envelopes).
func (n *Node) metrics() {
	remoteMessages := func(direction string, count *atomic.Uint64) prometheus.CounterFunc {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "rewind_cluster_remote_messages_total", Help: "Actor messages sent to or received from other nodes.",
			ConstLabels: prometheus.Labels{"direction": direction},
		}, func() float64 { return float64(count.Load()) })
	}
	n.sentCounter = remoteMessages("sent", &n.sent)
	n.receivedCounter = remoteMessages("received", &n.received)
	n.membersGauge = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "rewind_cluster_members", Help: "Cluster members this node sees, itself included.",
	}, func() float64 { return float64(n.Members()) })
	n.joinedGauge = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "rewind_cluster_joined", Help: "1 while this node is a member of its cluster.",
	}, func() float64 {
		if n.Joined() {
			return 1
		}
		return 0
	})
}

// Collectors are the node's metrics, for the server's registry:
// rewind_cluster_members, rewind_cluster_joined and
// rewind_cluster_remote_messages_total{direction="sent"|"received"}.
func (n *Node) Collectors() []prometheus.Collector {
	return []prometheus.Collector{n.sentCounter, n.receivedCounter, n.membersGauge, n.joinedGauge}
}

// RemoteMessages returns the counts of actor messages sent to and received
// from other nodes.
func (n *Node) RemoteMessages() (sent, received uint64) {
	return n.sent.Load(), n.received.Load()
}

// remoteOptions are the gRPC options that count the remote's messages.
// The dial options replace remote's default (an insecure connection),
// which they repeat.
func (n *Node) remoteOptions() []remote.ConfigOption {
	return []remote.ConfigOption{
		remote.WithDialOptions(
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
				s, err := streamer(ctx, desc, cc, method, opts...)
				if err != nil {
					return nil, err
				}
				return &countingClientStream{ClientStream: s, sent: &n.sent}, nil
			}),
		),
		remote.WithServerOptions(
			grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
				return handler(srv, &countingServerStream{ServerStream: ss, received: &n.received})
			}),
		),
	}
}

// envelopes counts the actor messages in m, a remote.RemoteMessage; its
// other kinds (connect, disconnect) carry none.
func envelopes(m any) int {
	rm, ok := m.(*remote.RemoteMessage)
	if !ok {
		return 0
	}
	return len(rm.GetMessageBatch().GetEnvelopes())
}

// countingClientStream counts the messages of the batches an endpoint
// writer sends.
type countingClientStream struct {
	grpc.ClientStream
	sent *atomic.Uint64
}

func (s *countingClientStream) SendMsg(m any) error {
	err := s.ClientStream.SendMsg(m)
	if err == nil {
		s.sent.Add(uint64(envelopes(m)))
	}
	return err
}

// countingServerStream counts the messages of the batches an endpoint
// reader receives.
type countingServerStream struct {
	grpc.ServerStream
	received *atomic.Uint64
}

func (s *countingServerStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if err == nil {
		s.received.Add(uint64(envelopes(m)))
	}
	return err
}
