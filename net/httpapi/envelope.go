package httpapi

import (
	"encoding/json"
	"net/http"
)

// envelope is every JSON answer of protocol.md §1.
type envelope struct {
	Type    string `json:"type"`
	Payload any    `json:"payload"`
}

type message struct {
	Message string `json:"message"`
}

func writeJSON(w http.ResponseWriter, status int, typ string, payload any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(envelope{Type: typ, Payload: payload})
}

func writeInfo(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, "info", message{msg})
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, "error", message{msg})
}

// The fixed texts of protocol.md §1.
const (
	msgRegistered     = "successfully created an account creation request."
	msgVerified       = "account successfully created."
	msgLoggedOut      = "successfully logged out."
	msgEmailTaken     = "email is already exist."
	msgNameTaken      = "name is already exist."
	msgKeyUnknown     = "The session has expired or does not exist."
	msgLoginMissing   = "email or password is no provided."
	msgLoginWrong     = "email or password incorrect."
	msgUnexpected     = "unexpected error was occurred."
	msgTooManyReqs    = "too many requests."
	msgTooManyLogins  = "too many attempts."
	msgBusy           = "server busy."
	msgBodyTooLarge   = "request body is too large."
	msgBodyTimeout    = "request body did not arrive in time."
	msgBadBody        = "request body could not be read."
	msgNotFound       = "not found."
	msgMethodNotAllow = "method not allowed."
)
