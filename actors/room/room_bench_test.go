package room_test

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/bwmarrin/snowflake"
	"github.com/rs/zerolog"

	"github.com/rewind-chat/rewind/actors/directory"
	"github.com/rewind-chat/rewind/actors/room"
	"github.com/rewind-chat/rewind/actors/roomstate"
	"github.com/rewind-chat/rewind/actors/writer"
	"github.com/rewind-chat/rewind/messages"
	"github.com/rewind-chat/rewind/persistence"
	"github.com/rewind-chat/rewind/persistence/sqlite"
)

// BenchmarkSend measures a room's send path: session → room → writer
// (group commit into a real SQLite file) → echo, with b.N sends in flight
// at once as a busy DM would have them.
func BenchmarkSend(b *testing.B) {
	ctx := context.Background()
	store, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "rewind.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	if err := store.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	for _, id := range []int64{1, 2} {
		if err := store.CreateUser(ctx, persistence.User{ID: id, Name: "u" + string(rune('0'+id)), Email: string(rune('0'+id)) + "@x.test", PasswordHash: "x"}); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := store.RequestFriend(ctx, 1, 2, time.Now()); err != nil {
		b.Fatal(err)
	}
	if err := store.AcceptFriend(ctx, 2, 1, time.Now()); err != nil {
		b.Fatal(err)
	}

	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler)
	}))
	defer system.Shutdown()
	root := system.Root
	ids, _ := snowflake.NewNode(1)
	w := root.Spawn(actor.PropsFromProducer(func() actor.Actor { return writer.New(writer.Config{Store: store}) }))
	loader := root.Spawn(actor.PropsFromProducer(func() actor.Actor { return roomstate.New(roomstate.Config{Store: store}) }))
	deps := &room.Deps{
		Loader: loader, NewID: func() int64 { return ids.Generate().Int64() }, Location: time.UTC, Now: time.Now,
		Idle: time.Minute, Log: zerolog.Nop(),
	}
	dir := directory.New(root, directory.Config{
		Room:    func(k messages.RoomKey) actor.Producer { return func() actor.Actor { return room.New(k, deps) } },
		Writers: []*actor.PID{w},
	})
	deps.Directory = dir

	replies := make(chan *messages.Reply, 1024)
	session := root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		if r, ok := c.Message().(*messages.Reply); ok {
			replies <- r
		}
	}))
	key := messages.DMKey(1, 2)
	send := func(seq uint64) {
		dir.SendToRoom(key, &messages.ChatWrite{RoomLow: key.Low, RoomHigh: key.High, ChatId: 3, Author: 1, Content: "hello there", Session: session, Seq: seq})
	}
	send(0) // warm up: the room loads its membership once
	<-replies

	b.ReportAllocs()
	b.ResetTimer()
	go func() {
		for i := range b.N {
			send(uint64(i + 1))
		}
	}()
	for range b.N {
		if r := <-replies; !bytes.HasPrefix(r.Frames[0], []byte(`{"type":"chat"`)) {
			b.Fatalf("send failed: %s", r.Frames[0])
		}
	}
}
