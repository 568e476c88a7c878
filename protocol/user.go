package protocol

import (
	"strconv"

	"github.com/rewind-chat/rewind/persistence"
)

// User is the user object of protocol.md §2.2.
type User struct {
	ID      string  `json:"id"`
	Name    string  `json:"name"`
	Profile *string `json:"profile"`
}

// UserOf is u as the wire shows it.
func UserOf(u persistence.User) User {
	return User{ID: strconv.FormatInt(u.ID, 10), Name: u.Name, Profile: u.Profile}
}

// UsersOf is us as the wire shows them; never nil, so it encodes as [].
func UsersOf(us []persistence.User) []User {
	out := make([]User, len(us))
	for i, u := range us {
		out[i] = UserOf(u)
	}
	return out
}

// FriendEvent is the payload of a mutual_users event (protocol.md §2.5).
type FriendEvent struct {
	Type   string `json:"type"`
	User   User   `json:"user"`
	Origin string `json:"origin,omitempty"`
}

// The statuses of protocol.md §4.4: a friend in a v2 auth answer, and a
// presence event.
const (
	StatusOnline  = "online"
	StatusOffline = "offline"
)

// Friend is a friend in a v2 auth answer's mutual_users: the user object
// with the friend's status (StatusOnline or StatusOffline).
type Friend struct {
	User
	Status string `json:"status"`
}
