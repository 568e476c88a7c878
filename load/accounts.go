package load

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rewind-chat/rewind/auth"
	"github.com/rewind-chat/rewind/net/smtpd"
	"github.com/rewind-chat/rewind/persistence"
	"github.com/rewind-chat/rewind/persistence/storeurl"
)

// accountName is the name of load user i of a run: the run prefix keeps
// repeated runs on one database apart.
func accountName(prefix string, i int) string { return prefix + "-" + strconv.Itoa(i) }

func accountEmail(name string) string { return name + "@load.rewind.test" }

// accountsInfo says how the accounts of a run were made.
type accountsInfo struct {
	Count   int     `json:"count"`
	Prefix  string  `json:"prefix"`
	Method  string  `json:"method"` // "store" or "http"
	Tokens  string  `json:"tokens"` // "mint" or "login"
	Seconds float64 `json:"seconds"`
}

// storeAccounts creates n verified users directly in the server's store,
// as `rewind user create` does (auth.UserMaker, which hashes the one
// password once for all of them), makes users 2i and 2i+1 friends for
// i < pairs, and gets a token for each.
func storeAccounts(ctx context.Context, cfg *Config, n, pairs int, log io.Writer) ([]Account, error) {
	if err := storeurl.Check(cfg.DatabaseURL); err != nil {
		return nil, err
	}
	store, err := storeurl.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	defer store.Close()
	// The name after the last is the longest: a prefix that leaves no room
	// for the numbers is refused before any account is made.
	if _, err := auth.CheckRegistration(accountName(cfg.Prefix, n), accountEmail(accountName(cfg.Prefix, n)), cfg.Password); err != nil {
		return nil, fmt.Errorf("load account names or password: %w", err)
	}
	maker, err := auth.NewUserMaker(cfg.NodeID, auth.OWASPParams)
	if err != nil {
		return nil, err
	}
	users := make([]persistence.User, n)
	for i := range users {
		name := accountName(cfg.Prefix, i)
		if users[i], err = maker.User(name, accountEmail(name), cfg.Password); err != nil {
			return nil, fmt.Errorf("load account %s: %w", name, err)
		}
	}
	now := time.Now()
	var made atomic.Int64
	stopTicker := ticker(log, func() string { return fmt.Sprintf("accounts: %d/%d created", made.Load(), n) })
	err = parallel(ctx, n, 8, func(i int) error {
		if err := store.CreateUser(ctx, users[i]); err != nil {
			return fmt.Errorf("create user %s: %w", users[i].Name, err)
		}
		made.Add(1)
		return nil
	})
	stopTicker()
	if err != nil {
		return nil, err
	}
	err = parallel(ctx, pairs, 8, func(i int) error {
		a, b := users[2*i], users[2*i+1]
		if _, err := store.RequestFriend(ctx, a.ID, b.ID, now); err != nil {
			return fmt.Errorf("friend request %s→%s: %w", a.Name, b.Name, err)
		}
		if err := store.AcceptFriend(ctx, b.ID, a.ID, now); err != nil {
			return fmt.Errorf("accept %s→%s: %w", a.Name, b.Name, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	accounts := make([]Account, n)
	for i, u := range users {
		accounts[i].Name = u.Name
	}
	if cfg.Tokens == "login" {
		return accounts, loginAll(ctx, cfg, accounts, log)
	}
	secret, err := auth.Secret(ctx, store, cfg.TokenSecret)
	if err != nil {
		return nil, err
	}
	tokens := auth.NewTokens(secret, cfg.TokenTTL, store, nil)
	for i, u := range users {
		if accounts[i].Token, err = tokens.Issue(u); err != nil {
			return nil, err
		}
	}
	return accounts, nil
}

// parallel runs f(0..n-1) on up to k goroutines; the first error stops it.
func parallel(ctx context.Context, n, k int, f func(i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(k, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := f(i); err != nil {
					cancel(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

// ticker prints line() every 2 s until the returned stop is called.
func ticker(log io.Writer, line func() string) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintln(log, line())
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// httpClient is the harness's client of the server's HTTP API.
func httpClient(concurrency int) *http.Client {
	return &http.Client{
		Timeout:   60 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: concurrency, MaxConnsPerHost: concurrency},
	}
}

// envelope is an HTTP API answer.
type envelope struct {
	Type    string `json:"type"`
	Payload struct {
		Message string `json:"message"`
		Token   string `json:"token"`
	} `json:"payload"`
}

func postForm(ctx context.Context, c *http.Client, u string, form url.Values) (int, envelope, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, envelope{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return do(c, req)
}

func do(c *http.Client, req *http.Request) (int, envelope, error) {
	resp, err := c.Do(req)
	if err != nil {
		return 0, envelope{}, err
	}
	defer resp.Body.Close()
	var e envelope
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, e, err
	}
	_ = json.Unmarshal(body, &e)
	return resp.StatusCode, e, nil
}

// login gets a token with POST /api/v1/auth/login.
func login(ctx context.Context, c *http.Client, base, email, password string) (string, error) {
	status, e, err := postForm(ctx, c, base+"/api/v1/auth/login", url.Values{"email": {email}, "password": {password}})
	switch {
	case err != nil:
		return "", err
	case status == http.StatusTooManyRequests:
		return "", errors.New("login refused with 429: start the server with REWIND_AUTH_RATE=0 for load runs")
	case status != http.StatusCreated || e.Payload.Token == "":
		return "", fmt.Errorf("login %s: HTTP %d %q", email, status, e.Payload.Message)
	}
	return e.Payload.Token, nil
}

// loginAll logs every account in over HTTP, each at its session's home
// node.
func loginAll(ctx context.Context, cfg *Config, accounts []Account, log io.Writer) error {
	c := httpClient(cfg.HTTPConcurrency)
	var done atomic.Int64
	stop := ticker(log, func() string { return fmt.Sprintf("accounts: %d/%d logged in", done.Load(), len(accounts)) })
	defer stop()
	return parallel(ctx, len(accounts), cfg.HTTPConcurrency, func(i int) error {
		t, err := login(ctx, c, cfg.nodeHTTP(i), accountEmail(accounts[i].Name), cfg.Password)
		if err != nil {
			return err
		}
		accounts[i].Token = t
		done.Add(1)
		return nil
	})
}

var linkPattern = regexp.MustCompile(`https?://[^\s"<>]+(/api/v1/auth/email_verify/[A-Za-z0-9_-]+)`)

// SMTPEnv is the server environment that --via-http needs: mail to the
// harness's receiver at addr, in plain SMTP.
func SMTPEnv(addr string) string {
	host, port, _ := strings.Cut(addr, ":")
	return "REWIND_SMTP_HOST=" + host + " REWIND_SMTP_PORT=" + port + " REWIND_SMTP_TLS=none REWIND_AUTH_RATE=0"
}

// httpAccounts creates n users through the real path: register over HTTP,
// receive the verification mail on the harness's own SMTP receiver, follow
// its link, log in; each at its session's home node.
func httpAccounts(ctx context.Context, cfg *Config, n int, log io.Writer) ([]Account, error) {
	mail, err := smtpd.Start(cfg.SMTPListen, 256)
	if err != nil {
		return nil, fmt.Errorf("SMTP receiver on %s: %w", cfg.SMTPListen, err)
	}
	defer mail.Close()
	fmt.Fprintf(log, "accounts: registering %d over HTTP; the server must run with %s\n", n, SMTPEnv(cfg.SMTPListen))

	var mu sync.Mutex
	waiting := make(map[string]chan string)
	mailCtx, stopMail := context.WithCancel(ctx)
	defer stopMail()
	go func() {
		for {
			m, err := mail.Next(mailCtx)
			if err != nil {
				return
			}
			body := strings.ReplaceAll(string(m.Data), "=\r\n", "")
			body = strings.ReplaceAll(body, "=3D", "=")
			match := linkPattern.FindStringSubmatch(body)
			if match == nil {
				continue
			}
			mu.Lock()
			for _, to := range m.To {
				to = strings.ToLower(strings.Trim(to, "<>"))
				if ch := waiting[to]; ch != nil {
					ch <- match[1]
					delete(waiting, to)
				}
			}
			mu.Unlock()
		}
	}()

	c := httpClient(cfg.HTTPConcurrency)
	accounts := make([]Account, n)
	var done atomic.Int64
	stop := ticker(log, func() string {
		return fmt.Sprintf("accounts: %d/%d registered, verified and logged in", done.Load(), n)
	})
	defer stop()
	err = parallel(ctx, n, cfg.HTTPConcurrency, func(i int) error {
		name := accountName(cfg.Prefix, i)
		email := accountEmail(name)
		base := cfg.nodeHTTP(i)
		ch := make(chan string, 1)
		mu.Lock()
		waiting[strings.ToLower(email)] = ch
		mu.Unlock()
		status, e, err := postForm(ctx, c, base+"/api/v1/auth/register",
			url.Values{"name": {name}, "email": {email}, "password": {cfg.Password}})
		switch {
		case err != nil:
			return err
		case status == http.StatusTooManyRequests:
			return errors.New("register refused with 429: start the server with REWIND_AUTH_RATE=0 for load runs")
		case status != http.StatusCreated:
			return fmt.Errorf("register %s: HTTP %d %q", name, status, e.Payload.Message)
		}
		var path string
		select {
		case path = <-ch:
		case <-time.After(60 * time.Second):
			return fmt.Errorf("no verification mail for %s within 60 s: start the server with %s", email, SMTPEnv(cfg.SMTPListen))
		case <-ctx.Done():
			return ctx.Err()
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Accept", "application/json")
		status, e, err = do(c, req)
		if err != nil {
			return err
		}
		if status != http.StatusCreated {
			return fmt.Errorf("verify %s: HTTP %d %q", email, status, e.Payload.Message)
		}
		token, err := login(ctx, c, base, email, cfg.Password)
		if err != nil {
			return err
		}
		accounts[i] = Account{Name: name, Token: token}
		done.Add(1)
		return nil
	})
	return accounts, err
}
