package httpapi

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	registrations prometheus.Counter
	verified      prometheus.Counter
	logins        *prometheus.CounterVec
	hashBusy      prometheus.Counter
	mailsRefused  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rewind_http_requests_total", Help: "HTTP requests by route, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "rewind_http_request_duration_seconds", Help: "HTTP request duration by route.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route"}),
		registrations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rewind_registrations_total", Help: "Registration requests accepted (mail queued).",
		}),
		verified: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rewind_accounts_verified_total", Help: "Accounts created by following a verification link.",
		}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rewind_logins_total", Help: "Login attempts by result.",
		}, []string{"result"}),
		hashBusy: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rewind_password_hashing_busy_total", Help: "Requests answered 503 because no password-hashing slot freed in time.",
		}),
		mailsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rewind_registration_mails_refused_total", Help: "Registrations refused because their email address had its quota of verification mails.",
		}),
	}
	reg.MustRegister(m.requests, m.duration, m.registrations, m.verified, m.logins, m.hashBusy, m.mailsRefused)
	return m
}
