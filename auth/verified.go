package auth

import (
	"sync"
	"time"

	"github.com/bwmarrin/snowflake"

	"github.com/rewind-chat/rewind/persistence"
)

// UserMaker makes verified users, accounts that skip the e-mail round of
// registration: `rewind user create` (an operator's) and rewind-load's
// accounts. A user it makes passes the rules of registration
// (CheckRegistration), has an argon2id hash of its password (HashPassword)
// and a new snowflake id; the caller stores it with Store.CreateUser,
// which refuses a name or e-mail in use with persistence.ErrNameTaken or
// ErrEmailTaken.
//
// The users one UserMaker makes with the same password share one hash,
// salt included: hashing is what making thousands of load accounts costs,
// and an operator makes one account at a time. Registrations of the public
// never come here; net/httpapi hashes each of their passwords on its own.
type UserMaker struct {
	ids    *snowflake.Node
	params PasswordParams

	mu       sync.Mutex
	hashed   bool
	password string // whose hash is hash
	hash     string
}

// NewUserMaker makes users with ids of snowflake node node (0..1023) and
// password hashes of cost p; a zero p takes DefaultPasswordParams.
func NewUserMaker(node int64, p PasswordParams) (*UserMaker, error) {
	ids, err := snowflake.NewNode(node)
	if err != nil {
		return nil, err
	}
	if p == (PasswordParams{}) {
		p = DefaultPasswordParams
	}
	return &UserMaker{ids: ids, params: p}, nil
}

// User checks name, email and password by the rules of registration and
// returns the verified user they make, created now: its name
// NFC-normalized, a new id, the password's hash. A field the rules refuse
// is a *RegistrationError. It is safe for concurrent use.
func (m *UserMaker) User(name, email, password string) (persistence.User, error) {
	reg, err := CheckRegistration(name, email, password)
	if err != nil {
		return persistence.User{}, err
	}
	hash, err := m.hashOf(reg.Password)
	if err != nil {
		return persistence.User{}, err
	}
	return persistence.User{
		ID:           m.ids.Generate().Int64(),
		Name:         reg.Name,
		Email:        reg.Email,
		PasswordHash: hash,
		CreatedAt:    time.Now(),
	}, nil
}

// hashOf is the hash of password: the last one made when it is the last
// password hashed.
func (m *UserMaker) hashOf(password string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.hashed && m.password == password {
		return m.hash, nil
	}
	hash, err := HashPassword(password, m.params)
	if err != nil {
		return "", err
	}
	m.hashed, m.password, m.hash = true, password, hash
	return hash, nil
}
