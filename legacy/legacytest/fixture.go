// Package legacytest builds the original backend's two databases, with
// the schema of ../shared/legacy.md, holding every case the import must
// handle: names that collide (also by case and width), one-sided friend
// lists, pending and crossed requests, Korean text, an id over 2^63, a DM
// table that is no pair's, an unknown author, NULL content. Tests of
// package legacy and of `rewind import-legacy` use it, and
// ./writefixture writes it for a demonstration.
package legacytest

import (
	"crypto/sha512"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"strconv"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver
)

// The original's schema, as legacy.md writes it.
const (
	mainSchema = `
CREATE TABLE snowflake_counter (count INTEGER NOT NULL, PRIMARY KEY (count));
CREATE TABLE user (
	id TEXT NOT NULL, name VARCHAR(32) NOT NULL, created_at DATETIME NOT NULL,
	email VARCHAR(100) NOT NULL, password VARCHAR(100) NOT NULL,
	server TEXT, mutual_users TEXT, mutual_requests TEXT, profile TEXT,
	PRIMARY KEY (id), UNIQUE (id));
CREATE TABLE dm_list (id TEXT NOT NULL, PRIMARY KEY (id), UNIQUE (id));
CREATE TABLE room (id TEXT NOT NULL, title VARCHAR(32) NOT NULL, created_at DATETIME NOT NULL,
	owner TEXT NOT NULL, PRIMARY KEY (id), UNIQUE (id));
CREATE TABLE room_list (id TEXT NOT NULL, PRIMARY KEY (id), UNIQUE (id));
CREATE TABLE ban (id TEXT NOT NULL, user TEXT NOT NULL, room TEXT NOT NULL,
	why VARCHAR(2000) NOT NULL, PRIMARY KEY (id), UNIQUE (id));`
	dmSchema = `CREATE TABLE "%s" (id TEXT NOT NULL, room TEXT NOT NULL, author TEXT NOT NULL,
	created_at DATETIME NOT NULL, content TEXT, PRIMARY KEY (id), UNIQUE (id));`
)

// User is a row of user, as the original stored it.
type User struct {
	Label                                        string // how tests name it; not stored
	ID, Name, CreatedAt, Email, Password         string
	Server, MutualUsers, MutualRequests, Profile *string
	// Plain is the password whose SHA-512 Password is; "" when Password
	// is not a digest.
	Plain string
}

// Message is a row of a DM table.
type Message struct {
	ID, Room, Author, CreatedAt string
	Content                     *string
}

// DM is a table of WIND_chat.db.
type DM struct {
	Table string
	Rows  []Message
}

// Fixture is the content of both databases.
type Fixture struct {
	Users  []User
	DMList []string
	DMs    []DM
	// Room and SnowflakeCounter fill tables the import does not take.
	Room             [][4]string
	SnowflakeCounter []int
}

// User returns the user labelled label; it panics when there is none.
func (f *Fixture) User(label string) User {
	for _, u := range f.Users {
		if u.Label == label {
			return u
		}
	}
	panic("legacytest: no user " + label)
}

// DM returns the table named table; it panics when there is none.
func (f *Fixture) DM(table string) DM {
	for _, d := range f.DMs {
		if d.Table == table {
			return d
		}
	}
	panic("legacytest: no table " + table)
}

// ChatID is the chat id of users a and b as the original wrote it.
func ChatID(a, b User) string {
	x, _ := strconv.ParseUint(a.ID, 10, 64)
	y, _ := strconv.ParseUint(b.ID, 10, 64)
	return strconv.FormatUint(x^y, 10)
}

// Table is the DM table of a and b.
func Table(a, b User) string { return "DM_" + ChatID(a, b) }

var seoul = func() *time.Location {
	loc, err := time.LoadLocation("Asia/Seoul")
	if err != nil {
		panic(err)
	}
	return loc
}()

// id makes an id as the original's generator did: the bits of counter
// followed by the bits of int(time.time() * 100000) at when (a naive
// Asia/Seoul time).
func id(counter uint64, when string) string {
	t, err := time.ParseInLocation("2006-01-02 15:04:05.999999", when, seoul)
	if err != nil {
		panic(err)
	}
	ts := uint64(t.UnixMicro() / 10)
	return strconv.FormatUint(counter<<bits.Len64(ts)|ts, 10)
}

func digest(password string) string {
	sum := sha512.Sum512([]byte(password))
	return hex.EncodeToString(sum[:])
}

func ptr(s string) *string { return &s }

// userList is a mutual_users value: user objects.
func userList(us ...User) *string {
	type obj struct {
		ID      string  `json:"id"`
		Name    string  `json:"name"`
		Profile *string `json:"profile"`
	}
	list := []obj{}
	for _, u := range us {
		list = append(list, obj{ID: u.ID, Name: u.Name})
	}
	b, _ := json.Marshal(list)
	return ptr(string(b))
}

// idList is a mutual_requests value: ids.
func idList(ids ...string) *string {
	b, _ := json.Marshal(append([]string{}, ids...))
	return ptr(string(b))
}

// BigDM is how many rows the large DM table holds: more than a batch.
const BigDM = 1200

// Default is the fixture the tests use.
func Default() *Fixture {
	mk := func(label string, counter uint64, name, created, email, password string) User {
		return User{Label: label, ID: id(counter, created), Name: name, CreatedAt: created, Email: email,
			Password: digest(password), Plain: password, Server: ptr("[]"), MutualUsers: ptr("[]"), MutualRequests: ptr("[]")}
	}
	alice := mk("alice", 1, "Alice", "2021-03-02 09:00:00.000000", "alice@school.ac.kr", "alice-password")
	bob := mk("bob", 2, "bob", "2021-03-02 10:15:30.123456", "bob@school.ac.kr", "bob-password")
	alice2 := mk("alice2", 3, "alice", "2021-03-05 11:00:00.5", "alice2@school.ac.kr", "alice2-password")
	alice3 := mk("alice3", 4, "ＡＬＩＣＥ", "2021-03-06 12:00:00.000001", "alice3@school.ac.kr", "alice3-password")
	minsu := mk("minsu", 5, "김민수", "2021-04-01 08:30:00.250000", "minsu@school.ac.kr", "민수의 비밀번호")
	minsu.Profile = ptr("https://example.com/minsu.png")
	carol := mk("carol", 6, "carol", "2021-04-02 13:00:00.000000", "carol@school.ac.kr", "carol-password")
	dave := mk("dave", 7, "dave", "2021-04-03 14:00:00.000000", "dave@school.ac.kr", "dave-password")
	erin := mk("erin", 8, "erin", "2021-04-04 15:00:00.000000", "erin@school.ac.kr", "erin-password")
	frank := mk("frank", 9, "frank", "2021-04-05 16:00:00.000000", "frank@school.ac.kr", "frank-password")
	grace := mk("grace", 10, "grace", "2021-05-01 09:00:00.000000", "grace@school.ac.kr", "grace-password")
	heidi := mk("heidi", 11, "heidi", "2021-05-02 10:00:00", "heidi@school.ac.kr", "")
	heidi.Password, heidi.Plain = "pbkdf2:sha256:150000$salt$hash", ""
	ivan := mk("ivan", 12, "Ivan", "2021-05-03 11:00:00.000000", "Bob@School.ac.kr", "ivan-password")
	judy := mk("judy", 13, "judy", "2021-02-28 10:00:00", "judy@school.ac.kr", "judy-password")
	judy.CreatedAt = "2021-02-30 10:00:00"
	judy.MutualUsers = ptr("[{")
	big := mk("big", 40000, "mallory", "2021-06-01 09:00:00.000000", "mallory@school.ac.kr", "mallory-password")
	nan := mk("nan", 0, "oscar", "2021-06-02 09:00:00.000000", "oscar@school.ac.kr", "oscar-password")
	nan.ID = "not-a-number"
	nan.Server = ptr(`["1"]`)

	alice.MutualUsers = userList(bob, minsu, grace)
	alice.MutualRequests = idList(dave.ID, bob.ID)
	bob.MutualUsers = userList(alice, minsu)
	bob.MutualRequests = nil // NULL, as a row the original never touched
	// As Python's json.dumps wrote it, with an entry that names no user.
	minsu.MutualUsers = ptr(fmt.Sprintf(`[{"id": "%s", "name": "Alice", "profile": null}, {"id": "%s", "name": "bob", "profile": null}, {"id": "123456789", "name": "ghost", "profile": null}]`, alice.ID, bob.ID))
	minsu.MutualRequests = idList("x1", big.ID)
	carol.MutualUsers = userList(bob)
	grace.MutualUsers = userList(alice)
	erin.MutualRequests = idList(frank.ID)
	frank.MutualRequests = idList(erin.ID)
	heidi.MutualRequests = idList(alice.ID)

	f := &Fixture{Users: []User{alice, bob, alice2, alice3, minsu, carol, dave, erin, frank, grace, heidi, ivan, judy, big, nan}}

	msg := func(counter uint64, a, b User, author User, created string, content *string) Message {
		return Message{ID: id(counter, created), Room: ChatID(a, b), Author: author.ID, CreatedAt: created, Content: content}
	}
	ab := func(counter uint64, author User, created string, content *string) Message {
		return msg(counter, alice, bob, author, created, content)
	}
	wrongRoom := ab(110, alice, "2021-12-25 10:00:00.000000", ptr("방 번호가 틀린 줄"))
	wrongRoom.Room = "1"
	badTime := ab(107, bob, "2021-12-31 23:00:00", ptr("날짜가 틀린 줄"))
	badTime.CreatedAt = "2021-12-32 25:00:00"
	bigID := ab(111, bob, "2021-12-25 11:00:00.000000", ptr("too big an id"))
	bigID.ID = id(40001, "2021-12-25 11:00:00.000000")
	// Rows out of time order, as edits (new id, same time) leave them.
	f.DMs = append(f.DMs, DM{Table: Table(alice, bob), Rows: []Message{
		ab(102, bob, "2021-12-23 00:20:01.123456", ptr("밥 먹었어? 🍚")),
		ab(101, alice, "2021-12-23 00:19:16.000880", ptr("안녕하세요! 오랜만이에요.")),
		ab(103, alice, "2021-12-23 00:20:01.123456", ptr("응, 방금 먹었어.\n너는?")),
		ab(104, bob, "2021-12-23 00:21:00.000000", nil),
		ab(105, alice, "2021-12-23 00:22:00.000000", ptr("")),
		ab(106, carol, "2021-12-23 00:23:00.000000", ptr("나는 이 대화방의 사람이 아닌데 어떻게 여기에 글을 쓰고 있는 걸까요? 정말 이상한 일이네요. 누가 설명해 줄 수 있나요?")),
		badTime,
		ab(108, alice, "2021-12-24 09:00:00", ptr("소수점 없는 시각")),
		ab(109, bob, "2021-12-24 09:30:00.000000", ptr("널\x00문자")),
		wrongRoom,
		bigID,
	}})
	f.DMs = append(f.DMs, DM{Table: Table(alice, minsu), Rows: []Message{
		msg(201, alice, minsu, minsu, "2022-02-01 18:00:00.000000", ptr("민수야 내일 수업 있어?")),
		msg(202, alice, minsu, alice, "2022-02-01 18:01:30.500000", ptr("응, 9시에")),
		msg(203, alice, minsu, minsu, "2022-02-01 18:02:00.000000", ptr("고마워 👍")),
	}})
	f.DMs = append(f.DMs, DM{Table: Table(erin, frank), Rows: []Message{
		msg(301, erin, frank, frank, "2022-03-01 12:00:00.000000", ptr("hi erin")),
	}})
	f.DMs = append(f.DMs, DM{Table: Table(alice, grace), Rows: []Message{
		msg(401, alice, grace, grace, "2022-04-01 12:00:00.000000", ptr("grace here")),
		msg(402, alice, grace, alice, "2022-04-01 12:05:00.000000", ptr("hello grace")),
	}})
	f.DMs = append(f.DMs, DM{Table: Table(alice, ivan), Rows: []Message{
		msg(501, alice, ivan, ivan, "2022-05-01 12:00:00.000000", ptr("ivan's only message")),
	}})
	var bulk []Message
	start := time.Date(2022, 1, 1, 0, 0, 0, 0, seoul)
	for i := range BigDM {
		when := start.Add(time.Duration(i) * time.Second).Format("2006-01-02 15:04:05.000000")
		author := bob
		if i%3 == 0 {
			author = minsu
		}
		bulk = append(bulk, msg(uint64(1000+i), bob, minsu, author, when, ptr(fmt.Sprintf("메시지 %d", i))))
	}
	f.DMs = append(f.DMs, DM{Table: Table(bob, minsu), Rows: bulk})
	f.DMs = append(f.DMs, DM{Table: "DM_12345", Rows: []Message{
		{ID: "12345001", Room: "12345", Author: alice.ID, CreatedAt: "2022-06-01 12:00:00.000000", Content: ptr("no pair has this chat id")},
		{ID: "12345002", Room: "12345", Author: bob.ID, CreatedAt: "2022-06-01 12:01:00.000000", Content: ptr("neither here")},
	}})
	f.DMList = []string{ChatID(alice, bob), ChatID(alice, minsu), ChatID(alice, grace), ChatID(alice, ivan),
		ChatID(bob, minsu), "12345", "999"} // not erin and frank's
	f.Room = [][4]string{{"1", "study group", "2021-06-01 10:00:00.000000", alice.ID}}
	f.SnowflakeCounter = []int{7}
	return f
}

// Write creates WIND_main.db and WIND_chat.db in dir (replacing them) and
// returns their paths.
func (f *Fixture) Write(dir string) (mainPath, chatPath string, err error) {
	mainPath, chatPath = filepath.Join(dir, "WIND_main.db"), filepath.Join(dir, "WIND_chat.db")
	for _, p := range []string{mainPath, chatPath} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", "", err
		}
	}
	if err := write(mainPath, func(tx *sql.Tx) error { return f.writeMain(tx) }); err != nil {
		return "", "", err
	}
	if err := write(chatPath, func(tx *sql.Tx) error { return f.writeChat(tx) }); err != nil {
		return "", "", err
	}
	return mainPath, chatPath, nil
}

func write(path string, fill func(*sql.Tx) error) error {
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		return err
	}
	defer db.Close()
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	if err := fill(tx); err != nil {
		tx.Rollback()
		return fmt.Errorf("legacytest: %s: %w", path, err)
	}
	return tx.Commit()
}

func (f *Fixture) writeMain(tx *sql.Tx) error {
	if _, err := tx.Exec(mainSchema); err != nil {
		return err
	}
	for _, u := range f.Users {
		if _, err := tx.Exec(`INSERT INTO user (id, name, created_at, email, password, server, mutual_users, mutual_requests, profile)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			u.ID, u.Name, u.CreatedAt, u.Email, u.Password, u.Server, u.MutualUsers, u.MutualRequests, u.Profile); err != nil {
			return err
		}
	}
	for _, id := range f.DMList {
		if _, err := tx.Exec(`INSERT INTO dm_list (id) VALUES (?)`, id); err != nil {
			return err
		}
	}
	for _, r := range f.Room {
		if _, err := tx.Exec(`INSERT INTO room (id, title, created_at, owner) VALUES (?, ?, ?, ?)`, r[0], r[1], r[2], r[3]); err != nil {
			return err
		}
	}
	for _, n := range f.SnowflakeCounter {
		if _, err := tx.Exec(`INSERT INTO snowflake_counter (count) VALUES (?)`, n); err != nil {
			return err
		}
	}
	return nil
}

func (f *Fixture) writeChat(tx *sql.Tx) error {
	for _, d := range f.DMs {
		if _, err := tx.Exec(fmt.Sprintf(dmSchema, d.Table)); err != nil {
			return err
		}
		for _, m := range d.Rows {
			if _, err := tx.Exec(fmt.Sprintf(`INSERT INTO "%s" (id, room, author, created_at, content) VALUES (?, ?, ?, ?, ?)`, d.Table),
				m.ID, m.Room, m.Author, m.CreatedAt, m.Content); err != nil {
				return err
			}
		}
	}
	return nil
}
