package kube

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// KubeRequests returns the counter of requests by verb, resource, code.
func KubeRequests(m *Metrics, verb, resource, code string) prometheus.Counter {
	return m.requests.WithLabelValues(verb, resource, code)
}

// CountRequests returns how many write requests and how many requests
// in all m has counted.
func CountRequests(m *Metrics) (writes, all float64) {
	ch := make(chan prometheus.Metric, 1024)
	go func() { m.requests.Collect(ch); close(ch) }()
	for c := range ch {
		var d dto.Metric
		if err := c.Write(&d); err != nil {
			continue
		}
		v := d.GetCounter().GetValue()
		all += v
		for _, l := range d.GetLabel() {
			if l.GetName() == "verb" {
				switch l.GetValue() {
				case "create", "update", "patch", "delete":
					writes += v
				}
			}
		}
	}
	return writes, all
}
