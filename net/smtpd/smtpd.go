// Package smtpd is a small SMTP receiver that keeps what it receives in
// memory: the real SMTP peer of REWIND's end-to-end tests and of the load
// harness's registrations over HTTP. It speaks plain SMTP without auth and
// is meant for loopback addresses only.
package smtpd

import (
	"context"
	"errors"
	"io"
	"net"

	"github.com/emersion/go-smtp"
)

// Message is one received mail.
type Message struct {
	From string
	To   []string
	Data []byte // the raw message, headers and body
}

// Server receives mail until Close.
type Server struct {
	srv    *smtp.Server
	ln     net.Listener
	mail   chan Message
	closed chan struct{} // closed by Close: stops senders waiting on mail
	done   chan struct{} // closed when Serve has returned
}

// Start listens on addr (e.g. "127.0.0.1:0"). Received messages queue up
// to buffer deep; past that a sender waits until Next takes one.
func Start(addr string, buffer int) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{ln: ln, mail: make(chan Message, buffer), closed: make(chan struct{}), done: make(chan struct{})}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &session{s: s}, nil
	}))
	s.srv.Domain = "localhost"
	s.srv.AllowInsecureAuth = true
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

// Host and Port are where the server listens.
func (s *Server) Host() string { return s.ln.Addr().(*net.TCPAddr).IP.String() }
func (s *Server) Port() int    { return s.ln.Addr().(*net.TCPAddr).Port }

// Next returns the next received message, waiting until one arrives or
// ctx ends.
func (s *Server) Next(ctx context.Context) (Message, error) {
	select {
	case m := <-s.mail:
		return m, nil
	case <-ctx.Done():
		return Message{}, ctx.Err()
	}
}

// Close stops the server and waits for it.
func (s *Server) Close() error {
	close(s.closed)
	err := s.srv.Close()
	<-s.done
	return err
}

type session struct {
	s    *Server
	from string
	to   []string
}

func (x *session) Mail(from string, _ *smtp.MailOptions) error { x.from = from; return nil }
func (x *session) Rcpt(to string, _ *smtp.RcptOptions) error   { x.to = append(x.to, to); return nil }
func (x *session) Reset()                                      { x.from, x.to = "", nil }
func (x *session) Logout() error                               { return nil }

func (x *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	select {
	case x.s.mail <- Message{From: x.from, To: x.to, Data: data}:
		return nil
	case <-x.s.closed:
		return errors.New("smtpd: server closed")
	}
}
