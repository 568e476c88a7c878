package webtest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/actors/mailer"
	"github.com/rewind-chat/rewind/logtest"
	"github.com/rewind-chat/rewind/net/client"
	"github.com/rewind-chat/rewind/net/smtpd"
	"github.com/rewind-chat/rewind/server"
	"github.com/rewind-chat/rewind/setting"
)

// ---- Chromium: found, skipped or required ----

func chromiumPath() string {
	if p := os.Getenv("REWIND_CHROMIUM"); p != "" {
		return p
	}
	return "/usr/bin/chromium"
}

func required() bool {
	return os.Getenv("CI") == "true" || os.Getenv("REWIND_REQUIRE_BROWSER") == "1"
}

var chromiumVersion = sync.OnceValues(func() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, chromiumPath(), "--version").Output()
	return strings.TrimSpace(string(out)), err
})

// TestBrowserAvailable prints one line for the Makefile: whether the
// browser tests ran, were skipped, or could not run though required.
func TestBrowserAvailable(t *testing.T) {
	v, err := chromiumVersion()
	switch {
	case err == nil:
		fmt.Printf("Chromium: ran the browser tests with %s (%s)\n", chromiumPath(), v)
	case required():
		fmt.Printf("Chromium: REQUIRED (CI=true or REWIND_REQUIRE_BROWSER=1) but %s cannot run: %v\n", chromiumPath(), err)
		t.FailNow()
	default:
		fmt.Printf("Chromium: SKIPPED the browser tests (%s cannot run: %v; apt-get install chromium)\n", chromiumPath(), err)
	}
}

func needChromium(t *testing.T) {
	t.Helper()
	if _, err := chromiumVersion(); err != nil {
		reason := fmt.Sprintf("Chromium %s cannot run (%v): the web client's browser tests need Debian's chromium (apt-get install chromium)", chromiumPath(), err)
		if required() {
			t.Fatalf("%s; CI=true or REWIND_REQUIRE_BROWSER=1 requires them", reason)
		}
		t.Skipf("%s; SKIPPED (CI=true or REWIND_REQUIRE_BROWSER=1 fails instead)", reason)
	}
}

// ---- the server ----

type harness struct {
	t    *testing.T
	srv  *server.Server
	smtp *smtpd.Server
	log  *logtest.Buffer
	base string // http://localhost:port, the origin the mailed links name
}

func startServer(t *testing.T) *harness {
	t.Helper()
	mail, err := smtpd.Start("127.0.0.1:0", 16)
	require.NoError(t, err)
	t.Cleanup(func() { mail.Close() })
	h := &harness{t: t, smtp: mail, log: &logtest.Buffer{}}
	logger := zerolog.New(h.log).With().Timestamp().Logger()
	srv, err := server.Start(context.Background(), server.Config{
		Addr:              "127.0.0.1:0",
		DatabaseURL:       "sqlite:" + filepath.Join(t.TempDir(), "rewind.db"),
		AuthRatePerMinute: setting.Off,
		Logger:            &logger,
		Mail: mailer.Config{
			Host: mail.Host(), Port: mail.Port(), TLS: mailer.TLSNone,
			From: "rewind@example.test", BaseBackoff: 10 * time.Millisecond,
		},
	})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		if t.Failed() {
			t.Logf("server log:\n%s", tail(h.log.String(), 60))
		}
	})
	h.srv = srv
	_, port, err := net.SplitHostPort(srv.Addr())
	require.NoError(t, err)
	h.base = "http://localhost:" + port
	return h
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

var linkPattern = regexp.MustCompile(`https?://[^\s"<>]+/api/v1/auth/email_verify/[A-Za-z0-9_-]+`)

// mailedLink waits for the verification mail to email and returns its link.
func (h *harness) mailedLink(email string) string {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := h.smtp.Next(ctx)
	require.NoError(h.t, err, "no verification mail arrived")
	require.Equal(h.t, []string{email}, m.To)
	body := strings.ReplaceAll(strings.ReplaceAll(string(m.Data), "=\r\n", ""), "=3D", "=")
	link := linkPattern.FindString(body)
	require.NotEmpty(h.t, link, "no link in the mail:\n%s", m.Data)
	return link
}

// ---- a browser tab, one person ----

type tab struct {
	t       *testing.T
	name    string
	user    string // the account's name: a second tab of bob is named "bob, 2nd tab"
	ctx     context.Context
	dialogs atomic.Int32
	mu      sync.Mutex
	console []string // exceptions, console errors, CSP reports
}

func newTab(t *testing.T, browser context.Context, name string) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	tb := &tab{t: t, name: name, user: strings.SplitN(name, ",", 2)[0], ctx: ctx}
	require.NoError(t, chromedp.Do(ctx)) // opens the tab
	require.NoError(t, chromedp.Listen(ctx, func(ev any) {
		switch e := ev.(type) {
		case *page.EventJavascriptDialogOpening:
			tb.dialogs.Add(1)
			tb.note("dialog: " + e.Message)
			go func() {
				_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
			}()
		case *runtime.EventExceptionThrown:
			d := e.ExceptionDetails
			text := d.Text
			if d.Exception != nil {
				text += " " + d.Exception.Description
			}
			tb.note(fmt.Sprintf("exception: %s (%s:%d)", text, d.URL, d.LineNumber))
		case *cdplog.EventEntryAdded:
			if e.Entry.Level == cdplog.EntryLevelError || strings.Contains(e.Entry.Text, "Content Security Policy") {
				tb.note(fmt.Sprintf("log %s: %s %s", e.Entry.Source, e.Entry.Text, e.Entry.URL))
			}
		}
	}))
	_, err := chromedp.Call(ctx, cdplog.Enable, cdp.Empty{})
	require.NoError(t, err)
	_, err = chromedp.Call(ctx, runtime.Enable, cdp.Empty{})
	require.NoError(t, err)
	return tb
}

func (tb *tab) note(s string) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.console = append(tb.console, s)
}

func (tb *tab) notes() []string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return append([]string(nil), tb.console...)
}

// do runs actions with a time limit; on failure it says what the page showed.
func (tb *tab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		tb.t.Fatalf("%s: %s: %v\n%s", tb.name, what, err, tb.state())
	}
}

// state is what the page shows, for failure messages.
func (tb *tab) state() string {
	ctx, cancel := context.WithTimeout(tb.ctx, 3*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({
		url: location.href,
		status: (document.getElementById('conn-status') || {}).textContent,
		errors: (document.getElementById('errors') || {}).textContent,
		forms: [...document.querySelectorAll('.form-msg')].map(e => e.textContent),
		messages: [...document.querySelectorAll('#messages .content')].map(e => e.textContent)})`))
	if err != nil {
		s = "(page state unavailable: " + err.Error() + ")"
	}
	return fmt.Sprintf("page of %s: %s\nconsole: %q", tb.name, s, tb.notes())
}

// wait polls a JavaScript expression until it is truthy.
func (tb *tab) wait(what, expr string) {
	tb.t.Helper()
	tb.do("waiting for "+what, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		for {
			// An exception (an element of the next page not there yet) is false.
			guarded := `(() => { try { return (` + expr + `); } catch { return false; } })()`
			_, err := chromedp.Poll[chromedp.Void](guarded, chromedp.WithPollingInterval(25*time.Millisecond), chromedp.WithPollingTimeout(12*time.Second))(ctx, t)
			// A navigation under way (a click on a link) ends the page's
			// context: poll again in the next page.
			if err != nil && ctx.Err() == nil && navigating(err) {
				time.Sleep(25 * time.Millisecond)
				continue
			}
			return err
		}
	}))
}

// navigating tells the errors of a page going away under a command.
func navigating(err error) bool {
	for _, s := range []string{"context with specified id", "context was destroyed", "navigated or closed"} {
		if strings.Contains(err.Error(), s) {
			return true
		}
	}
	return false
}

func (tb *tab) eval(expr string) string {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	require.NoError(tb.t, err, expr)
	return s
}

func (tb *tab) fill(sel, value string) chromedp.Action[chromedp.Void] {
	return chromedp.SetValue(chromedp.CSS(sel), value)
}

func click(sel string) chromedp.Action[chromedp.Void] { return chromedp.Click(chromedp.CSS(sel)) }

func js(s string) string { b, _ := json.Marshal(s); return string(b) }

// countText is an expression: how many message contents read text.
func countText(text string) string {
	return `[...document.querySelectorAll('#messages .msg .content')].filter(e => e.textContent === ` + js(text) + `).length`
}

func (tb *tab) send(text string) {
	tb.t.Helper()
	tb.do("send "+text, chromedp.SendKeys(chromedp.CSS("#message-input"), text), click("#composer button[type=submit]"))
	tb.wait("own message "+text, countText(text)+` === 1 && !document.getElementById('message-input').value`)
}

// viewport sizes the tab's page; under 600 px wide as a phone (mobile,
// touch). startBrowser's windows are 1280×800.
func (tb *tab) viewport(width, height int64) {
	tb.t.Helper()
	var opts []chromedp.EmulateViewportOption
	if width < 600 {
		opts = append(opts, chromedp.EmulateMobile, chromedp.EmulateTouch)
	}
	tb.do(fmt.Sprintf("a %d×%d viewport", width, height), chromedp.EmulateViewport(width, height, opts...))
}

func (tb *tab) screenshot(dir, name string, width, height int64) {
	tb.t.Helper()
	tb.viewport(width, height)
	ctx, cancel := context.WithTimeout(tb.ctx, 15*time.Second)
	defer cancel()
	require.NoError(tb.t, chromedp.Do(ctx, chromedp.Sleep(150*time.Millisecond)))
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	require.NoError(tb.t, err)
	require.True(tb.t, bytes.HasPrefix(png, []byte("\x89PNG")), "a PNG")
	require.NoError(tb.t, os.WriteFile(filepath.Join(dir, name), png, 0o644))
	tb.viewport(1280, 800)
}

// ---- the browser, its people ----

// startBrowser starts a headless Chromium of the test's own.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath()), chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true), chromedp.WindowSize(1280, 800))
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	browser, cancelBrowser := chromedp.NewContext(alloc)
	t.Cleanup(cancelBrowser)
	require.NoError(t, chromedp.Do(browser))
	return browser
}

// tabs opens a tab per name, and on failure logs what each page showed.
func tabs(t *testing.T, browser context.Context, names ...string) []*tab {
	t.Helper()
	var tbs []*tab
	for _, n := range names {
		tbs = append(tbs, newTab(t, browser, n))
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, tb := range tbs {
				t.Log(tb.state())
			}
		}
	})
	return tbs
}

// account registers name by the HTTP API, verifies it by the mailed link
// and logs it in: its token. (TestWebClient goes through the forms.)
func (h *harness) account(name string) string {
	h.t.Helper()
	post := func(path string, body map[string]string) []byte {
		b, err := json.Marshal(body)
		require.NoError(h.t, err)
		res, err := http.Post(h.base+path, "application/json", bytes.NewReader(b))
		require.NoError(h.t, err)
		defer res.Body.Close()
		var out bytes.Buffer
		_, err = out.ReadFrom(res.Body)
		require.NoError(h.t, err)
		require.Less(h.t, res.StatusCode, 300, "%s: %s", path, out.String())
		return out.Bytes()
	}
	email := name + "@example.test"
	post("/api/v1/auth/register", map[string]string{"name": name, "email": email, "password": "password-" + name})
	res, err := http.Get(h.mailedLink(email))
	require.NoError(h.t, err)
	res.Body.Close()
	require.Equal(h.t, http.StatusCreated, res.StatusCode, "verified")
	var env struct {
		Payload struct{ Token string } `json:"payload"`
	}
	require.NoError(h.t, json.Unmarshal(post("/api/v1/auth/login", map[string]string{"email": email, "password": "password-" + name}), &env))
	require.NotEmpty(h.t, env.Payload.Token)
	return env.Payload.Token
}

// logIn opens the client with token in the tab's session storage, as the
// login form leaves it, and waits for it to be online.
func (tb *tab) logIn(h *harness, token string) {
	tb.t.Helper()
	tb.do("open", chromedp.Navigate(h.base+"/"))
	tb.eval(`sessionStorage.setItem('rewind.token', ` + js(token) + `), 'ok'`)
	tb.do("open logged in", chromedp.Navigate(h.base+"/"))
	tb.wait("online", `document.getElementById('conn-status').textContent === 'Online' && document.getElementById('me').lastChild.textContent === `+js(tb.user))
}

// requireClean fails if the tab opened a dialog or logged an exception, a
// console error or a CSP report, other than those containing except.
func (tb *tab) requireClean(except ...string) {
	tb.t.Helper()
	require.Zero(tb.t, tb.dialogs.Load(), "%s: no dialog opened", tb.name)
	var notes []string
next:
	for _, n := range tb.notes() {
		for _, e := range except {
			if strings.Contains(n, e) {
				continue next
			}
		}
		notes = append(notes, n)
	}
	require.Empty(tb.t, notes, "%s: no exceptions, console errors or CSP reports", tb.name)
}

// ---- the tests ----

// TestWebClient walks two people through the client: register, verify by
// the mailed link, log in, become friends, chat (live, edit, delete,
// typing, read receipts, unread badge), an offline spell with catch-up, a
// guild joined by invite link, history paging, HTML shown as text, a
// profile picture URL, unfriending, logout.
func TestWebClient(t *testing.T) {
	needChromium(t)
	start := time.Now()
	h := startServer(t)
	shots := os.Getenv("REWIND_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	require.NoError(t, os.MkdirAll(shots, 0o755))

	people := tabs(t, startBrowser(t), "alice", "bob")
	alice, bob := people[0], people[1]

	// The page, its headers, and no console errors on load.
	res, err := http.Get(h.base + "/")
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Contains(t, res.Header.Get("Content-Security-Policy"), "default-src 'none'")

	// Register, verify through the mailed link, log in.
	for _, p := range []struct {
		tb    *tab
		email string
	}{{alice, "alice@example.test"}, {bob, "bob@example.test"}} {
		tb := p.tb
		tb.do("open", chromedp.Navigate(h.base+"/"))
		tb.wait("the login form", `!document.getElementById('auth-view').hidden`)
		tb.do("register",
			tb.fill("#register-name", tb.name), tb.fill("#register-email", p.email), tb.fill("#register-password", "password-"+tb.name),
			click("#register-form button[type=submit]"))
		tb.wait("registered", `document.querySelector('#register-form .form-msg').textContent.includes('open the verification link')`)
		link := h.mailedLink(p.email)
		u, err := url.Parse(link)
		require.NoError(t, err)
		require.Equal(t, h.base, u.Scheme+"://"+u.Host)
		tb.do("follow the mailed link", chromedp.Navigate(link))
		tb.wait("verified", `document.body.textContent.includes('You can log in now.')`)
		tb.do("back to the client", click("#login-link"))
		tb.wait("the login form", `!document.getElementById('auth-view').hidden`)
		tb.do("log in", tb.fill("#login-email", p.email), tb.fill("#login-password", "password-"+tb.name), click("#login-form button[type=submit]"))
		tb.wait("online", `document.getElementById('conn-status').textContent === 'Online' && document.getElementById('me').lastChild.textContent === `+js(tb.name))
	}

	// Friends: a request, seen live, accepted; presence dots.
	alice.do("ask bob", alice.fill("#friend-name", "bob"), click("#add-friend button[type=submit]"))
	alice.wait("the request out", `document.querySelector('#outgoing li[data-name="bob"]')`)
	bob.wait("the request in", `document.querySelector('#incoming li[data-name="alice"] button.accept')`)
	bob.do("accept", click(`#incoming li[data-name="alice"] button.accept`))
	bob.wait("alice a friend", `document.querySelector('#friends li[data-name="alice"] .dot.online') && !document.querySelector('#incoming li')`)
	alice.wait("bob a friend", `document.querySelector('#friends li[data-name="bob"] .dot.online') && !document.querySelector('#outgoing li')`)

	// A DM: the message live on the other side, unread badge, read receipt.
	alice.do("open the DM", click(`#friends li[data-name="bob"] button`))
	alice.wait("the DM open", `document.getElementById('chat-title').textContent === 'bob' && !document.getElementById('composer').hidden`)
	alice.send("hello bob")
	bob.wait("unread badge", `(document.querySelector('#friends li[data-name="alice"] .badge') || {}).textContent === '1'`)
	alice.wait("not seen yet", `document.querySelector('#messages li.mine .receipt').textContent === 'Sent'`)
	bob.do("open the DM", click(`#friends li[data-name="alice"] button`))
	bob.wait("the message", countText("hello bob")+` === 1 && !document.querySelector('#friends .badge')`)
	alice.wait("read receipt", `document.querySelector('#messages li.mine .receipt').textContent === 'Seen'`)

	// Typing, then a reply seen live (which ends the typing line).
	bob.do("type", chromedp.SendKeys(chromedp.CSS("#message-input"), "hi al"))
	alice.wait("typing", `document.getElementById('typing').textContent === 'bob is typing…'`)
	bob.do("finish typing", chromedp.SendKeys(chromedp.CSS("#message-input"), "ice"), click("#composer button[type=submit]"))
	alice.wait("the reply, typing over", countText("hi alice")+` === 1 && document.getElementById('typing').textContent === ''`)

	// Edit and delete, seen live.
	alice.do("edit", click(`#messages li.mine .edit`))
	alice.do("edited text", alice.fill("#messages .edit-input", "hello bob, edited"), click("#messages .edit-form button[type=submit]"))
	bob.wait("the edit", countText("hello bob, edited")+` === 1 && `+countText("hello bob")+` === 0 && document.querySelector('#messages .edited')`)
	alice.send("to be deleted")
	bob.wait("the doomed message", countText("to be deleted")+` === 1`)
	alice.do("delete", chromedp.Click(chromedp.Search(`//li[contains(@class,"mine")][.//p[text()="to be deleted"]]//button[contains(@class,"delete")]`)))
	bob.wait("the delete", countText("to be deleted")+` === 0`)
	alice.wait("the delete", countText("to be deleted")+` === 0`)

	// Markup is text.
	const markup = `<img src=x onerror=alert(1)>`
	bob.send(markup)
	alice.wait("the markup as text", countText(markup)+` === 1`)
	for _, tb := range []*tab{alice, bob} {
		require.Equal(t, "none", tb.eval(`document.querySelector('#messages img') ? 'an img' : 'none'`), tb.name)
	}
	alice.screenshot(shots, "dm-desktop.png", 1280, 800)
	alice.screenshot(shots, "dm-phone.png", 390, 844)

	// Offline: bob's socket is cut; alice sends and edits meanwhile; after
	// the reconnect bob has the message once and the edit.
	bob.eval(`window.__rewindTest.offline(true), 'ok'`)
	bob.wait("offline", `document.getElementById('conn-status').textContent === 'Offline'`)
	alice.send("while you were away")
	alice.do("edit again", chromedp.Click(chromedp.Search(`//li[contains(@class,"mine")][.//p[text()="hello bob, edited"]]//button[contains(@class,"edit")]`)))
	alice.do("edited again", alice.fill("#messages .edit-input", "hello bob, edited twice"), click("#messages .edit-form button[type=submit]"))
	alice.wait("own edit", countText("hello bob, edited twice")+` === 1`)
	time.Sleep(200 * time.Millisecond)
	require.Equal(t, "0", bob.eval(`String(`+countText("while you were away")+`)`), "offline: nothing arrives")
	bob.eval(`window.__rewindTest.offline(false), 'ok'`)
	bob.wait("caught up", countText("while you were away")+` === 1 && `+countText("hello bob, edited twice")+` === 1 && document.getElementById('conn-status').textContent === 'Online'`)
	time.Sleep(300 * time.Millisecond)
	require.Equal(t, "1", bob.eval(`String(`+countText("while you were away")+`)`), "once")
	alice.send("and after")
	bob.wait("live again", countText("and after")+` === 1`)

	// A guild: created, invite link, joined from bob's tab by the link, a
	// channel message each way, members on both sides.
	alice.do("create a guild", alice.fill("#guild-name", "Rewinders"), click("#create-guild button[type=submit]"))
	alice.wait("the guild open", `document.getElementById('guild-title').textContent === 'Rewinders' && document.getElementById('chat-title').textContent === '# general'`)
	alice.do("invite", click("#invite-button"))
	alice.wait("the invite link", `document.getElementById('invite-link').value.includes('/#join=')`)
	invite := alice.eval(`document.getElementById('invite-link').value`)
	require.True(t, strings.HasPrefix(invite, h.base+"/#join="), invite)
	bob.do("open the invite link", chromedp.Navigate("about:blank"), chromedp.Navigate(invite))
	bob.wait("joined", `document.getElementById('guild-title').textContent === 'Rewinders' && document.getElementById('chat-title').textContent === '# general' && location.hash === ''`)
	bob.wait("members", `[...document.querySelectorAll('#members li')].map(e => e.dataset.name).sort().join() === 'alice,bob'`)
	alice.wait("bob joined", `[...document.querySelectorAll('#members li')].map(e => e.dataset.name).sort().join() === 'alice,bob'`)
	bob.send("hello guild")
	alice.wait("the channel message", countText("hello guild")+` === 1`)
	alice.send("welcome, bob")
	bob.wait("the answer", countText("welcome, bob")+` === 1`)
	bob.screenshot(shots, "guild-desktop.png", 1280, 800)
	bob.screenshot(shots, "guild-phone.png", 390, 844)

	// History paging: 50 more messages (sent over a plain WebSocket as
	// alice), then a fresh page load shows the newest 50 and the rest on
	// scrolling up, each once.
	token := alice.eval(`sessionStorage.getItem('rewind.token')`)
	bulk(t, h, token, 50)
	bob.do("open the DM", click(`#friends li[data-name="alice"] button`))
	bob.wait("the bulk", countText("bulk 49")+` === 1`)
	bob.do("reload", chromedp.Navigate(h.base+"/"))
	bob.wait("online", `document.getElementById('conn-status').textContent === 'Online'`)
	bob.do("open the DM", click(`#friends li[data-name="alice"] button`))
	bob.wait("a page", `document.querySelectorAll('#messages .msg').length === 50 && `+countText("bulk 49")+` === 1`)
	bob.eval(`document.getElementById('messages-scroll').scrollTop = 0, 'ok'`)
	bob.wait("every message", countText("hello bob, edited twice")+` === 1 && `+countText("bulk 00")+` === 1 && document.getElementById('older-button').hidden`)
	all := bob.eval(`JSON.stringify([...document.querySelectorAll('#messages .msg .content')].map(e => e.textContent))`)
	var texts []string
	require.NoError(t, json.Unmarshal([]byte(all), &texts))
	require.Len(t, texts, 5+50, "hello, hi alice, markup, away, and after, the bulk: %q", texts) // to be deleted is gone
	seen := map[string]bool{}
	for _, s := range texts {
		require.False(t, seen[s], "twice: %q", s)
		seen[s] = true
	}

	// A profile picture URL, seen by the friend (the picture itself does
	// not load: nothing answers there).
	alice.do("profile", click("#profile-button"), alice.fill("#profile-url", "https://127.0.0.1:9/alice.png"), click("#profile-panel button[type=submit]"))
	alice.wait("saved", `document.getElementById('profile-panel').hidden && document.getElementById('profile-url').value === 'https://127.0.0.1:9/alice.png'`)

	// Unfriending, live on the other side; the DM stays readable.
	bob.do("unfriend", click("#unfriend-button"))
	bob.wait("no friend", `!document.querySelector('#friends li[data-name="alice"]') && document.getElementById('composer').hidden && `+countText("bulk 49")+` === 1`)
	alice.wait("no friend", `!document.querySelector('#friends li[data-name="bob"]')`)

	// Logout.
	alice.do("log out", click("#logout-button"))
	alice.wait("logged out", `!document.getElementById('auth-view').hidden && sessionStorage.length === 0`)

	alice.requireClean("alice.png") // the picture that cannot load
	bob.requireClean("alice.png")
	t.Logf("the browser walk took %s", time.Since(start).Round(time.Millisecond))
}

// shown is an expression: whether an error line (#errors) reads text.
func shown(text string) string {
	return `[...document.querySelectorAll('#errors .error span')].some(e => e.textContent === ` + js(text) + `)`
}

// visible is an expression: whether the element sel selects is shown
// (neither it nor an ancestor hidden or display: none).
func visible(sel string) string {
	return `!!document.querySelector(` + js(sel) + `)?.checkVisibility()`
}

// guildNames is an expression: the names in the guild list, joined by commas.
const guildNames = `[...document.querySelectorAll('#guilds li .name')].map(e => e.textContent).join()`

// names is an expression: the data-name (or data-channel) of the items of
// the list with that id, sorted and joined by commas.
func names(list string) string {
	return `[...document.querySelectorAll('#` + list + ` li')].map(e => e.dataset.name || e.dataset.channel).sort().join()`
}

// watchErrors makes the page keep every error line it shows (they go
// after 10 s), for shownErrors.
func (tb *tab) watchErrors() {
	tb.eval(`window.__shown = [], new MutationObserver((ms) => { for (const m of ms) for (const n of m.addedNodes) window.__shown.push(n.firstChild.textContent); }).observe(document.getElementById('errors'), { childList: true }), 'ok'`)
}

func (tb *tab) shownErrors() []string {
	tb.t.Helper()
	var out []string
	require.NoError(tb.t, json.Unmarshal([]byte(tb.eval(`JSON.stringify(window.__shown)`)), &out))
	return out
}

// TestWebClientRequestsAndGuildAdmin covers what TestWebClient leaves out:
// a friend request declined and one taken back, live on both sides; a
// guild's owner adding a channel, deleting one, renaming the guild and
// kicking a member, a member leaving and coming back; the owner's
// controls on a phone-sized screen; a second tab of bob that learns of his
// joins made in the first; and the server's refusals shown in words. Its
// people log in by token, not by the forms.
func TestWebClientRequestsAndGuildAdmin(t *testing.T) {
	needChromium(t)
	start := time.Now()
	h := startServer(t)
	people := tabs(t, startBrowser(t), "alice", "bob", "bob, 2nd tab")
	alice, bob, bob2 := people[0], people[1], people[2]
	tokens := map[string]string{}
	for _, tb := range people {
		if tokens[tb.user] == "" {
			tokens[tb.user] = h.account(tb.user)
		}
		tb.logIn(h, tokens[tb.user])
		tb.watchErrors()
	}

	// A request declined, then one taken back: each seen live on the
	// other side, and no friendship either way.
	ask := func() {
		t.Helper()
		alice.do("ask bob", alice.fill("#friend-name", "bob"), click("#add-friend button[type=submit]"))
		alice.wait("the request out", `document.querySelector('#outgoing li[data-name="bob"] button.cancel')`)
		bob.wait("the request in", `document.querySelector('#incoming li[data-name="alice"] button.decline')`)
	}
	noRequests := `!document.querySelector('#incoming li, #outgoing li, #friends li[data-name]') && document.getElementById('incoming').hidden && document.getElementById('outgoing').hidden`
	ask()
	bob.do("decline", click(`#incoming li[data-name="alice"] button.decline`))
	bob.wait("declined", noRequests)
	alice.wait("declined", noRequests)
	ask()
	alice.do("take it back", click(`#outgoing li[data-name="bob"] button.cancel`))
	alice.wait("taken back", noRequests)
	bob.wait("taken back", noRequests)

	// A name nobody has: refused in words, the name kept to correct.
	alice.do("ask nobody", alice.fill("#friend-name", "nobody"), click("#add-friend button[type=submit]"))
	alice.wait("the refusal", shown("select named user is not exist.")+` && document.getElementById('friend-name').value === 'nobody'`)

	// A guild whose only channel cannot be deleted: the server's refusal
	// shown, the channel still there.
	alice.do("create a guild", alice.fill("#guild-name", "Crew"), click("#create-guild button[type=submit]"))
	alice.wait("the guild open", `document.getElementById('guild-title').textContent === 'Crew' && document.getElementById('chat-title').textContent === '# general'`)
	alice.do("delete the only channel", click(`#channels li[data-channel="general"] button.delete-channel`))
	alice.wait("the refusal", shown("Cannot delete the last channel.")+` && `+names("channels")+` === 'general'`)

	// Bob joins with the link pasted; the owner's controls are hers alone.
	alice.do("invite", click("#invite-button"))
	alice.wait("the invite link", `document.getElementById('invite-link').value.includes('/#join=')`)
	invite := alice.eval(`document.getElementById('invite-link').value`)
	bob.do("join", bob.fill("#join-code", invite), click("#join-guild button[type=submit]"))
	bob.wait("joined", `document.getElementById('guild-title').textContent === 'Crew' && document.getElementById('chat-title').textContent === '# general' && `+
		`!document.getElementById('leave-button').hidden && document.getElementById('rename-button').hidden && document.getElementById('create-channel').hidden && !document.querySelector('#guild-pane .delete-channel, #guild-pane .kick') && `+
		names("members")+` === 'alice,bob' && document.getElementById('members-title').textContent === 'Members (2)'`)
	alice.wait("bob a member", names("members")+` === 'alice,bob' && document.querySelector('#members li[data-name="bob"] button.kick') && !document.querySelector('#members li[data-name="alice"] button.kick') && `+
		`document.getElementById('members-title').textContent === 'Members (2)' && document.getElementById('leave-button').hidden && !`+visible("#guild-more"))

	// Bob's other tab learns of the join from its member_join event alone:
	// the guild listed, its channel open, a message each way.
	bob2.wait("the guild listed", guildNames+` === 'Crew'`)
	bob2.do("open it", click(`#guilds li button.chat-link`))
	bob2.wait("the guild open", `document.getElementById('guild-title').textContent === 'Crew' && document.getElementById('chat-title').textContent === '# general' && `+names("channels")+` === 'general' && !document.getElementById('composer').hidden`)
	bob2.send("from the other tab")
	alice.wait("bob's other tab", countText("from the other tab")+` === 1`)
	alice.send("seen from both tabs")
	bob2.wait("alice's message", countText("seen from both tabs")+` === 1`)
	bob.wait("both messages", countText("from the other tab")+` === 1 && `+countText("seen from both tabs")+` === 1`)

	// A second channel: seen by both, chatted in both ways.
	alice.do("add a channel", alice.fill("#channel-name", "random"), click("#create-channel button[type=submit]"))
	alice.wait("the channel open", `document.getElementById('chat-title').textContent === '# random' && `+names("channels")+` === 'general,random'`)
	bob.wait("the channel listed", names("channels")+` === 'general,random'`)
	bob.do("open it", click(`#channels li[data-channel="random"] button.chat-link`))
	bob.wait("the channel open", `document.getElementById('chat-title').textContent === '# random' && !document.getElementById('composer').hidden`)
	bob.send("random thought")
	alice.wait("bob's message", countText("random thought")+` === 1`)
	alice.send("random reply")
	bob.wait("alice's message", countText("random reply")+` === 1`)

	// The channel deleted while both read it: gone from both views.
	alice.do("delete the channel", click(`#channels li[data-channel="random"] button.delete-channel`))
	for _, tb := range []*tab{alice, bob} {
		tb.wait("the channel gone", names("channels")+` === 'general' && document.getElementById('chat-title').textContent === 'Pick a friend or a channel' && document.getElementById('composer').hidden && !document.querySelector('#messages li')`)
	}

	// A rename, seen by both in the guild list and the guild pane.
	alice.do("rename", click("#rename-button"))
	alice.wait("the rename form", `!document.getElementById('rename-guild').hidden && document.getElementById('rename-name').value === 'Crew'`)
	alice.do("the new name", alice.fill("#rename-name", "Crew 2"), click("#rename-guild button[type=submit]"))
	for _, tb := range people {
		tb.wait("the new name", `document.getElementById('guild-title').textContent === 'Crew 2' && [...document.querySelectorAll('#guilds li .name')].map(e => e.textContent).join() === 'Crew 2'`)
	}
	alice.wait("the form closed", `document.getElementById('rename-guild').hidden`)

	// Bob leaves from the channel he reads: the guild goes from his list,
	// and from alice's members. What is said meanwhile is there when he
	// comes back (by the invite link in the address bar).
	bob.do("open general", click(`#channels li[data-channel="general"] button.chat-link`))
	bob.wait("general open", `document.getElementById('chat-title').textContent === '# general' && !document.getElementById('composer').hidden`)
	bob.do("leave", click("#leave-button"))
	bob.wait("the guild gone", `!document.querySelector('#guilds li') && document.getElementById('guild-pane').hidden && document.getElementById('composer').hidden && document.getElementById('chat-title').textContent === 'Pick a friend or a channel'`)
	alice.wait("bob gone", names("members")+` === 'alice' && document.getElementById('members-title').textContent === 'Members (1)'`)
	bob2.wait("the guild gone", `!document.querySelector('#guilds li') && document.getElementById('guild-pane').hidden`)
	alice.do("open general", click(`#channels li[data-channel="general"] button.chat-link`))
	alice.send("while bob was out")
	bob.eval(`location.hash = ` + js(invite[strings.Index(invite, "#"):]) + `, 'ok'`)
	bob.wait("back", `document.getElementById('guild-title').textContent === 'Crew 2' && document.getElementById('chat-title').textContent === '# general' && `+countText("while bob was out")+` === 1 && `+
		names("members")+` === 'alice,bob' && document.getElementById('members-title').textContent === 'Members (2)'`)
	alice.wait("bob back", names("members")+` === 'alice,bob' && document.getElementById('members-title').textContent === 'Members (2)'`)
	bob2.wait("the guild back", guildNames+` === 'Crew 2'`)

	// On a phone-sized screen the guild pane above the chat is a strip; the
	// owner opens the rest (by keyboard), adds a channel and kicks bob.
	alice.viewport(390, 844)
	alice.wait("the phone layout", visible("#chat-pane")+` && !`+visible("#sidebar")+` && `+visible("#guild-more")+` && !`+visible("#channel-name")+` && !`+visible("#members-box"))
	alice.do("open members & settings", chromedp.Focus(chromedp.CSS("#guild-more")), chromedp.KeyEvent(kb.Enter))
	alice.wait("the owner's controls", `document.getElementById('guild-more').getAttribute('aria-expanded') === 'true' && `+visible("#channel-name")+` && `+visible(`#members li[data-name="bob"] button.kick`))
	alice.do("add a channel", chromedp.SendKeys(chromedp.CSS("#channel-name"), "phone"+kb.Enter))
	alice.wait("the channel open", `document.getElementById('chat-title').textContent === '# phone' && `+names("channels")+` === 'general,phone' && `+visible("#composer"))
	bob.wait("the channel listed", names("channels")+` === 'general,phone'`)

	// Kicked: bob's views (both tabs) drop the guild at once and say why.
	alice.do("kick bob", click(`#members li[data-name="bob"] button.kick`))
	for _, tb := range []*tab{bob, bob2} {
		tb.wait("removed", shown("You were removed from the guild Crew 2.")+` && !document.querySelector('#guilds li') && document.getElementById('guild-pane').hidden && document.getElementById('composer').hidden`)
	}
	alice.wait("bob gone", names("members")+` === 'alice' && document.getElementById('members-title').textContent === 'Members (1)'`)
	alice.viewport(1280, 800)

	// Every error shown was one of the above: none swallowed, none extra.
	require.Equal(t, []string{"select named user is not exist.", "Cannot delete the last channel."}, alice.shownErrors())
	require.Equal(t, []string{"You were removed from the guild Crew 2."}, bob.shownErrors())
	require.Equal(t, []string{"You were removed from the guild Crew 2."}, bob2.shownErrors())
	for _, tb := range people {
		tb.requireClean()
	}
	t.Logf("the browser walk took %s", time.Since(start).Round(time.Millisecond))
}

// bulk sends n messages from the token's user to its only friend, over a
// WebSocket of its own, each waited for.
func bulk(t *testing.T, h *harness, token string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, "ws://"+h.srv.Addr()+"/ws?v=2")
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Call(ctx, "heartbeat", map[string]int{"count": 0})
	require.NoError(t, err)
	f, err := c.Call(ctx, "auth", map[string]string{"auth": token})
	require.NoError(t, err)
	var auth struct {
		Self    struct{ ID string }   `json:"self_user"`
		Friends []struct{ ID string } `json:"mutual_users"`
	}
	require.NoError(t, json.Unmarshal(f.Payload, &auth), string(f.Payload))
	require.Len(t, auth.Friends, 1)
	me, err := strconv.ParseInt(auth.Self.ID, 10, 64)
	require.NoError(t, err)
	friend, err := strconv.ParseInt(auth.Friends[0].ID, 10, 64)
	require.NoError(t, err)
	chatID := strconv.FormatInt(me^friend, 10)
	for i := range n {
		f, err := c.Call(ctx, "chat", map[string]string{"type": "send", "chat_id": chatID, "content": fmt.Sprintf("bulk %02d", i)})
		require.NoError(t, err)
		require.Equal(t, "chat", f.Type, string(f.Payload))
	}
}
