package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/rewind-chat/rewind/auth"
	"github.com/rewind-chat/rewind/persistence"
	"github.com/rewind-chat/rewind/persistence/storeurl"
)

// createUser makes a verified account directly in the store, with the
// rules and password hashing of registration, and prints its id.
func createUser(args []string, stdout io.Writer) error {
	s := newSettings("user create")
	s.addDatabaseURL()
	s.add("REWIND_NODE_ID", "0", "snowflake node id, 0..1023")
	name := s.fs.String("name", "", "user name")
	email := s.fs.String("email", "", "e-mail address")
	password := s.fs.String("password", "", "password, 8 to 256 bytes")
	if err := parse(s, args, stdout); err != nil {
		return err
	}
	node, err := s.integer("REWIND_NODE_ID", 0, 1023)
	if err != nil {
		return usageError{err}
	}
	if err := storeurl.Check(s.get("REWIND_DATABASE_URL")); err != nil {
		return usageError{s.invalid("REWIND_DATABASE_URL", err)}
	}
	maker, err := auth.NewUserMaker(node, auth.DefaultPasswordParams)
	if err != nil {
		return err
	}
	u, err := maker.User(*name, *email, *password)
	if errors.As(err, new(*auth.RegistrationError)) {
		return usageError{err}
	}
	if err != nil {
		return err
	}
	ctx := context.Background()
	store, err := storeurl.Open(ctx, s.get("REWIND_DATABASE_URL"))
	if err != nil {
		return err
	}
	defer store.Close()
	switch err := store.CreateUser(ctx, u); {
	case errors.Is(err, persistence.ErrEmailTaken):
		return &auth.RegistrationError{Message: "email is already exist."}
	case errors.Is(err, persistence.ErrNameTaken):
		return &auth.RegistrationError{Message: "name is already exist."}
	case err != nil:
		return err
	}
	fmt.Fprintln(stdout, u.ID)
	return nil
}
