package httpapi

import (
	"errors"
	"html/template"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/rs/zerolog"

	"github.com/rewind-chat/rewind/auth"
	"github.com/rewind-chat/rewind/persistence"
)

func (a *API) handleRegister(w http.ResponseWriter, r *http.Request) {
	if !a.register.allow(a.cfg.TrustedProxies.Key(r), a.cfg.Now()) {
		writeError(w, http.StatusTooManyRequests, msgTooManyReqs)
		return
	}
	f, err := a.fields(w, r, "name", "email", "password")
	if err != nil {
		writeBodyError(w, err)
		return
	}
	reg, err := auth.CheckRegistration(f["name"], f["email"], f["password"])
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	hash, err := a.hashPassword(r.Context(), reg.Password)
	if err != nil {
		a.unexpected(w, r, err)
		return
	}
	key, keyHash, err := a.cfg.Keys.New()
	if err != nil {
		a.unexpected(w, r, err)
		return
	}
	now := a.cfg.Now()
	err = a.cfg.Store.PutPendingRegistration(r.Context(), persistence.PendingRegistration{
		KeyHash: keyHash, Name: reg.Name, Email: reg.Email, PasswordHash: hash,
		ExpiresAt: now.Add(a.cfg.RegistrationTTL), CreatedAt: now,
	}, persistence.MailQuota{Max: a.cfg.Limits.MailsPerAddress, Window: a.cfg.Limits.MailWindow})
	switch {
	case errors.Is(err, persistence.ErrEmailTaken), errors.Is(err, persistence.ErrNameTaken):
		writeError(w, http.StatusBadRequest, takenMessage(err))
		return
	case errors.Is(err, persistence.ErrTooManyMails):
		a.metrics.mailsRefused.Inc()
		writeError(w, http.StatusTooManyRequests, msgTooManyReqs)
		return
	case err != nil:
		a.unexpected(w, r, err)
		return
	}
	a.cfg.Mailer.SendVerification(reg.Email, reg.Name, a.cfg.PublicURL+"/api/v1/auth/email_verify/"+key)
	a.metrics.registrations.Inc()
	writeInfo(w, http.StatusCreated, msgRegistered)
}

func (a *API) handleVerify(w http.ResponseWriter, r *http.Request) {
	html := prefersHTML(r.Header.Get("Accept"))
	answer := func(status int, msg string) {
		switch {
		case html:
			writeVerifyPage(w, status, msg)
		case status == http.StatusCreated:
			writeInfo(w, status, msg)
		default:
			writeError(w, status, msg)
		}
	}
	_, err := a.cfg.Store.VerifyRegistration(r.Context(), a.cfg.Keys.Hash(r.PathValue("key")), a.cfg.Now(), a.cfg.NewID())
	switch {
	case errors.Is(err, persistence.ErrNotFound):
		answer(http.StatusNotFound, msgKeyUnknown)
	case errors.Is(err, persistence.ErrEmailTaken), errors.Is(err, persistence.ErrNameTaken):
		answer(http.StatusConflict, takenMessage(err))
	case err != nil:
		logFailure(r, err)
		answer(http.StatusInternalServerError, msgUnexpected)
	default:
		a.metrics.verified.Inc()
		answer(http.StatusCreated, msgVerified)
	}
}

func (a *API) handleLogin(w http.ResponseWriter, r *http.Request) {
	if !a.login.allow(a.cfg.TrustedProxies.Key(r), a.cfg.Now()) {
		a.metrics.logins.WithLabelValues("rate_limited").Inc()
		writeError(w, http.StatusTooManyRequests, msgTooManyLogins)
		return
	}
	f, err := a.fields(w, r, "email", "password")
	if err != nil {
		writeBodyError(w, err)
		return
	}
	email, password := f["email"], f["password"]
	if email == "" || password == "" {
		writeError(w, http.StatusBadRequest, msgLoginMissing)
		return
	}
	// Counted per account whether or not it exists, so that the limit
	// does not tell which emails have one.
	try, ok := a.failures.begin(persistence.Fold(email), a.cfg.Now())
	if !ok {
		a.metrics.logins.WithLabelValues("account_limited").Inc()
		writeError(w, http.StatusTooManyRequests, msgTooManyLogins)
		return
	}
	u, err := a.cfg.Store.UserByEmail(r.Context(), email)
	hash := u.PasswordHash
	switch {
	case errors.Is(err, persistence.ErrNotFound):
		hash = a.dummyHash
	case err != nil:
		try.undecided()
		a.unexpected(w, r, err)
		return
	}
	// No length rule here: an imported user's old password may be shorter
	// than registration allows, and it is still the password.
	ok, upgrade, err := a.checkPassword(r.Context(), password, hash)
	if err != nil {
		try.undecided()
		a.unexpected(w, r, err)
		return
	}
	if !ok || u.ID == 0 {
		a.metrics.logins.WithLabelValues("refused").Inc()
		writeError(w, http.StatusUnauthorized, msgLoginWrong)
		return
	}
	try.succeeded()
	if upgrade != "" {
		a.replaceLegacyHash(r, u, upgrade)
	}
	token, err := a.cfg.Tokens.Issue(u)
	if err != nil {
		a.unexpected(w, r, err)
		return
	}
	a.metrics.logins.WithLabelValues("ok").Inc()
	writeJSON(w, http.StatusCreated, "auth", struct {
		Token string `json:"token"`
	}{token})
}

// replaceLegacyHash stores upgrade, u's password in argon2id, in place of
// u's legacy hash, unless the hash changed since it was read (another login
// replaced it first). A failed write does not fail the login: the password
// was right, the legacy hash still holds it, and the next login tries again;
// refusing would lock the user out over a write that can wait.
func (a *API) replaceLegacyHash(r *http.Request, u persistence.User, upgrade string) {
	if _, err := a.cfg.Store.ReplacePasswordHash(r.Context(), u.ID, u.PasswordHash, upgrade); err != nil {
		zerolog.Ctx(r.Context()).Warn().Err(err).Int64("user", u.ID).
			Msg("login: legacy password hash not replaced; the next login tries again")
	}
}

func (a *API) handleLogout(w http.ResponseWriter, r *http.Request) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		token = ""
	}
	u, err := a.cfg.Tokens.Resolve(r.Context(), token)
	var te *auth.TokenError
	switch {
	case errors.As(err, &te):
		w.Header().Set("WWW-Authenticate", `Bearer realm="rewind"`)
		writeError(w, http.StatusUnauthorized, te.Reason)
		return
	case err != nil:
		a.unexpected(w, r, err)
		return
	}
	if _, err := a.cfg.Store.BumpTokenGeneration(r.Context(), u.ID); err != nil {
		a.unexpected(w, r, err)
		return
	}
	if a.cfg.OnLogout != nil {
		a.cfg.OnLogout(u.ID)
	}
	writeInfo(w, http.StatusOK, msgLoggedOut)
}

// prefersHTML reports whether an Accept header ranks text/html above
// application/json, as a browser following the mail's link does.
func prefersHTML(accept string) bool {
	return quality(accept, "text/html") > quality(accept, "application/json")
}

// quality is the q-value that accept gives mediaType (RFC 9110 §12.5.1):
// the most specific matching range wins.
func quality(accept, mediaType string) float64 {
	major, _, _ := strings.Cut(mediaType, "/")
	best, specificity := 0.0, -1
	for _, part := range strings.Split(accept, ",") {
		rng, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		s := -1
		switch {
		case rng == mediaType:
			s = 2
		case rng == major+"/*":
			s = 1
		case rng == "*/*":
			s = 0
		}
		if s <= specificity {
			continue
		}
		q := 1.0
		if v, ok := params["q"]; ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				q = f
			}
		}
		best, specificity = q, s
	}
	return best
}

var verifyPage = template.Must(template.New("verify").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>REWIND</title></head>
<body style="font-family:sans-serif;max-width:32em;margin:4em auto;text-align:center">
<h1>REWIND</h1><p>{{.Message}}</p>
{{if .Created}}<p>You can log in now.</p>
<p><a href="/" id="login-link">Log in to REWIND</a></p>{{else}}<p><a href="/">Open REWIND</a></p>{{end}}
</body></html>
`))

// writeVerifyPage answers a browser that followed the mailed link, with a
// link to the web client served at "/".
func writeVerifyPage(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_ = verifyPage.Execute(w, struct {
		Message string
		Created bool
	}{msg, status == http.StatusCreated})
}
