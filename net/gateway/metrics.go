package gateway

import (
	"errors"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	open      prometheus.Gauge
	framesIn  prometheus.Counter // children resolved once: the hot paths only Inc
	framesOut prometheus.Counter
	closes    *prometheus.CounterVec
	refusals  *prometheus.CounterVec
}

// newMetrics registers the gateway's metrics with reg, when set. Collectors
// that reg already holds (a second Handler on one registry) are shared.
func newMetrics(reg prometheus.Registerer) *metrics {
	open := register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "rewind_ws_connections", Help: "WebSocket connections open now.",
	}))
	frames := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rewind_ws_frames_total", Help: "WebSocket frames read (in) and written (out), control frames included.",
	}, []string{"direction"}))
	closes := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rewind_ws_closes_total", Help: "Ended WebSocket connections by close code (1006: no close frame was exchanged).",
	}, []string{"code"}))
	refusals := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rewind_ws_refused_total", Help: "WebSocket upgrades refused before the handshake, by HTTP status (503: shutting down or too many connections; 429: too many unauthenticated connections from one address).",
	}, []string{"status"}))
	return &metrics{
		open:      open,
		framesIn:  frames.WithLabelValues("in"),
		framesOut: frames.WithLabelValues("out"),
		closes:    closes,
		refusals:  refusals,
	}
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	err := reg.Register(c)
	var dup prometheus.AlreadyRegisteredError
	if errors.As(err, &dup) {
		if existing, ok := dup.ExistingCollector.(C); ok {
			return existing
		}
	}
	if err != nil {
		panic(err)
	}
	return c
}

func (m *metrics) ended(d *Disconnect) {
	m.closes.WithLabelValues(strconv.Itoa(int(d.Code))).Inc()
}

func (m *metrics) refused(status int) {
	m.refusals.WithLabelValues(strconv.Itoa(status)).Inc()
}
