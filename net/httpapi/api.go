// Package httpapi serves REWIND's HTTP API (protocol.md §1): registration
// with e-mail verification, login, logout, the HTML test forms, health and
// metrics.
package httpapi

import (
	"context"
	"errors"
	"net/http"
	"runtime"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/rewind-chat/rewind/auth"
	"github.com/rewind-chat/rewind/net/clientaddr"
	"github.com/rewind-chat/rewind/persistence"
)

// Mailer queues a verification mail; it must not block on the mail server.
type Mailer interface {
	SendVerification(to, name, link string)
}

// Config of the API. Store, Tokens, Keys, Mailer and NewID are required;
// another zero value takes the default its field names, and
// AuthRatePerMinute is turned off with setting.Off (package setting has
// the convention).
type Config struct {
	Store  persistence.Store
	Tokens *auth.Tokens
	Keys   *auth.VerificationKeys
	Mailer Mailer
	// NewID returns a fresh snowflake for a new user.
	NewID func() int64
	// PublicURL prefixes the verification link; default DefaultPublicURL
	// (server passes the one it serves at).
	PublicURL string
	// RegistrationTTL is how long a verification link works; default
	// DefaultRegistrationTTL (24h).
	RegistrationTTL time.Duration
	// AuthRatePerMinute caps register and login requests per client IP,
	// each (bursts of the same size; REWIND_AUTH_RATE); default
	// DefaultAuthRatePerMinute (30); setting.Off: no limit.
	AuthRatePerMinute int
	// MaxBodyBytes caps request bodies (413 above); default
	// DefaultMaxBodyBytes (1 MiB).
	MaxBodyBytes int64
	// Password hashing cost; default auth.DefaultPasswordParams.
	Password auth.PasswordParams
	// Registry receives the API's metrics and is served on /metrics;
	// default a new registry.
	Registry *prometheus.Registry
	// Logger gets one line per request; default a disabled logger.
	Logger *zerolog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// OnLogout runs after a logout revoked userID's tokens, to close the
	// user's open sessions; optional.
	OnLogout func(userID int64)
	// TrustedProxies are the reverse proxies whose X-Forwarded-For names
	// the client that the per-IP limits count; none by default.
	TrustedProxies clientaddr.Proxies
	// Limits of protocol.md §1 "Registration hardening".
	Limits Limits
}

// Defaults of Config.
const (
	DefaultPublicURL         = "http://localhost:8080"
	DefaultRegistrationTTL   = 24 * time.Hour
	DefaultAuthRatePerMinute = 30
	DefaultMaxBodyBytes      = 1 << 20
)

// Limits bound what one client can make the API do. A zero value takes the
// default of protocol.md §1 its field names; LoginFailures and
// MailsPerAddress are turned off with setting.Off.
type Limits struct {
	// BodyTimeout: a request body must arrive within it, or the answer is
	// 408; default DefaultBodyTimeout (10 s).
	BodyTimeout time.Duration
	// HashConcurrency: password hashes (argon2id) that run at once;
	// default one per core (runtime.GOMAXPROCS(0)).
	HashConcurrency int
	// HashWait: how long a request waits to start hashing before it is
	// answered 503 "server busy."; default DefaultHashWait (5 s).
	HashWait time.Duration
	// LoginFailures per account (email) within LoginWindow, past which
	// login answers 429 "too many attempts."; default DefaultLoginFailures
	// per DefaultLoginWindow (10 per 15 minutes); setting.Off: no limit.
	LoginFailures int
	LoginWindow   time.Duration
	// MailsPerAddress: verification mails per email address within
	// MailWindow, past which registration answers 429 "too many
	// requests." and queues nothing; default DefaultMailsPerAddress per
	// DefaultMailWindow (3 per hour); setting.Off: no limit.
	MailsPerAddress int
	MailWindow      time.Duration
}

// Defaults of Limits.
const (
	DefaultBodyTimeout     = 10 * time.Second
	DefaultHashWait        = 5 * time.Second
	DefaultLoginFailures   = 10
	DefaultLoginWindow     = 15 * time.Minute
	DefaultMailsPerAddress = 3
	DefaultMailWindow      = time.Hour
)

func (l Limits) withDefaults() Limits {
	if l.BodyTimeout <= 0 {
		l.BodyTimeout = DefaultBodyTimeout
	}
	if l.HashConcurrency <= 0 {
		l.HashConcurrency = runtime.GOMAXPROCS(0)
	}
	if l.HashWait <= 0 {
		l.HashWait = DefaultHashWait
	}
	if l.LoginFailures == 0 {
		l.LoginFailures = DefaultLoginFailures
	}
	if l.LoginWindow <= 0 {
		l.LoginWindow = DefaultLoginWindow
	}
	if l.MailsPerAddress == 0 {
		l.MailsPerAddress = DefaultMailsPerAddress
	}
	if l.MailWindow <= 0 {
		l.MailWindow = DefaultMailWindow
	}
	return l
}

// API is the HTTP handler of protocol.md §1.
type API struct {
	cfg      Config
	mux      *http.ServeMux
	metrics  *metrics
	register *ipLimiter
	login    *ipLimiter
	// failures counts failed logins per account.
	failures *failureLimiter
	// hashing bounds concurrent argon2id work: each hash holds a core and
	// 19 MiB.
	hashing chan struct{}
	// dummyHash makes a login for an unknown email cost what a wrong
	// password costs, so timing does not tell which emails exist.
	dummyHash string
	log       zerolog.Logger
}

// New returns the API with cfg's zero values resolved.
func New(cfg Config) (*API, error) {
	if cfg.PublicURL == "" {
		cfg.PublicURL = DefaultPublicURL
	}
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	if cfg.RegistrationTTL <= 0 {
		cfg.RegistrationTTL = DefaultRegistrationTTL
	}
	if cfg.AuthRatePerMinute == 0 {
		cfg.AuthRatePerMinute = DefaultAuthRatePerMinute
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.Password == (auth.PasswordParams{}) {
		cfg.Password = auth.DefaultPasswordParams
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Limits = cfg.Limits.withDefaults()
	log := zerolog.Nop()
	if cfg.Logger != nil {
		log = *cfg.Logger
	}
	dummy, err := auth.HashPassword("not a password of anyone", cfg.Password)
	if err != nil {
		return nil, err
	}
	a := &API{
		cfg:       cfg,
		mux:       http.NewServeMux(),
		metrics:   newMetrics(cfg.Registry),
		register:  newIPLimiter(cfg.AuthRatePerMinute),
		login:     newIPLimiter(cfg.AuthRatePerMinute),
		failures:  newFailureLimiter(cfg.Limits.LoginFailures, cfg.Limits.LoginWindow),
		hashing:   make(chan struct{}, cfg.Limits.HashConcurrency),
		dummyHash: dummy,
		log:       log,
	}
	a.routes()
	return a, nil
}

// Handle serves pattern with h behind the API's request id, log line,
// metrics and panic recovery: the browser client's page and assets.
func (a *API) Handle(pattern string, h http.Handler) { a.mux.Handle(pattern, h) }

func (a *API) routes() {
	a.mux.Handle("/api/v1/auth/register", only(http.MethodPost, a.handleRegister))
	a.mux.Handle("/api/v1/auth/email_verify/{key}", only(http.MethodGet, a.handleVerify))
	a.mux.Handle("/api/v1/auth/login", only(http.MethodPost, a.handleLogin))
	a.mux.Handle("/api/v1/auth/logout", only(http.MethodPost, a.handleLogout))
	a.mux.Handle("/register", only(http.MethodGet, formPage(registerForm)))
	a.mux.Handle("/login", only(http.MethodGet, formPage(loginForm)))
	a.mux.Handle("/healthz", only(http.MethodGet, func(w http.ResponseWriter, r *http.Request) {
		writeInfo(w, http.StatusOK, "ok")
	}))
	a.mux.Handle("/readyz", only(http.MethodGet, a.handleReady))
	a.mux.Handle("/metrics", only(http.MethodGet, promhttp.HandlerFor(a.cfg.Registry, promhttp.HandlerOpts{}).ServeHTTP))
	a.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, msgNotFound)
	})
}

// only answers 405 in the API's envelope to other methods (HEAD is GET's).
func only(method string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method && !(method == http.MethodGet && r.Method == http.MethodHead) {
			w.Header().Set("Allow", method)
			writeError(w, http.StatusMethodNotAllowed, msgMethodNotAllow)
			return
		}
		h(w, r)
	}
}

func (a *API) handleReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := a.cfg.Store.Ping(ctx); err != nil {
		a.log.Warn().Err(err).Msg("readiness: database does not answer")
		writeError(w, http.StatusServiceUnavailable, "database unavailable.")
		return
	}
	writeInfo(w, http.StatusOK, "ready")
}

// errBusy: no hashing slot freed within Limits.HashWait.
var errBusy = errors.New("httpapi: password hashing busy")

// startHashing takes a hashing slot, waiting at most Limits.HashWait; the
// caller runs done when its hash is computed.
func (a *API) startHashing(ctx context.Context) (done func(), err error) {
	release := func() { <-a.hashing }
	select {
	case a.hashing <- struct{}{}:
		return release, nil
	default:
	}
	t := time.NewTimer(a.cfg.Limits.HashWait)
	defer t.Stop()
	select {
	case a.hashing <- struct{}{}:
		return release, nil
	case <-t.C:
		a.metrics.hashBusy.Inc()
		return nil, errBusy
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// hashPassword runs argon2id within the concurrency bound.
func (a *API) hashPassword(ctx context.Context, password string) (string, error) {
	done, err := a.startHashing(ctx)
	if err != nil {
		return "", err
	}
	defer done()
	return auth.HashPassword(password, a.cfg.Password)
}

// checkPassword checks password against hash in one hashing slot. A legacy
// hash (auth.NeedsUpgrade) costs only a SHA-512, so the slot spends the
// argon2id run it lacks: on the hash that replaces it when the password
// matched (upgrade, for the caller to store), on the dummy hash when it did
// not. Every login thus costs one argon2id, and timing tells neither a
// legacy account nor an unknown email from the others.
func (a *API) checkPassword(ctx context.Context, password, hash string) (ok bool, upgrade string, err error) {
	done, err := a.startHashing(ctx)
	if err != nil {
		return false, "", err
	}
	defer done()
	ok, err = auth.CheckPassword(password, hash)
	switch {
	case err != nil || !auth.NeedsUpgrade(hash):
		return ok, "", err
	case !ok:
		_, err = auth.CheckPassword(password, a.dummyHash)
		return false, "", err
	}
	upgrade, err = auth.HashPassword(password, a.cfg.Password)
	return err == nil, upgrade, err
}

// unexpected answers a request that failed on the server's side: 503
// "server busy." when hashing had no slot, else 500.
func (a *API) unexpected(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, errBusy) {
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, msgBusy)
		return
	}
	logFailure(r, err)
	writeError(w, http.StatusInternalServerError, msgUnexpected)
}

func logFailure(r *http.Request, err error) {
	zerolog.Ctx(r.Context()).Error().Err(err).Msg("request failed")
}

func takenMessage(err error) string {
	if errors.Is(err, persistence.ErrEmailTaken) {
		return msgEmailTaken
	}
	return msgNameTaken
}
