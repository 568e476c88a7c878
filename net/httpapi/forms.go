package httpapi

import "net/http"

// The HTML test forms of protocol.md §1: plain forms, form-encoded posts.
const (
	registerForm = `<form method="post" action="/api/v1/auth/register">
<label>Name <input name="name" required minlength="2" maxlength="32" autocomplete="username"></label>
<label>Email <input name="email" type="email" required maxlength="254" autocomplete="email"></label>
<label>Password <input name="password" type="password" required minlength="8" autocomplete="new-password"></label>
<button type="submit">Register</button>
</form>`
	loginForm = `<form method="post" action="/api/v1/auth/login">
<label>Email <input name="email" type="email" required autocomplete="email"></label>
<label>Password <input name="password" type="password" required autocomplete="current-password"></label>
<button type="submit">Log in</button>
</form>`
)

func formPage(form string) http.HandlerFunc {
	page := `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>REWIND</title>
<style>body{font-family:sans-serif;max-width:24em;margin:4em auto}label{display:block;margin:.6em 0}input{display:block;width:100%}</style>
</head><body><h1>REWIND</h1>
` + form + `
</body></html>
`
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(page))
	}
}
