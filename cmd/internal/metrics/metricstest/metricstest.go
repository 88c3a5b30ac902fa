// Package metricstest reads the daemon's metrics in tests: a scrape over
// HTTP (or over a connection made elsewhere, such as in a network
// namespace), parsed by Prometheus's own text parser, lookups of a sample
// by labels, and `promtool check metrics`.
package metricstest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Get sends GET path to addr and returns the status code and body.
func Get(t testing.TB, addr, path string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		t.Fatalf("GET %s%s: %v", addr, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s%s: read: %v", addr, path, err)
	}
	return resp.StatusCode, string(b)
}

// GetOn sends GET path over conn (one request, then conn is closed) and
// returns the status code and body.
func GetOn(t testing.TB, conn net.Conn, path string) (int, string) {
	t.Helper()
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n", path)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

// Families is a parsed scrape.
type Families map[string]*dto.MetricFamily

// Parse parses a scrape in the text format with Prometheus's parser.
func Parse(t testing.TB, body string) Families {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("the scrape does not parse: %v\n%s", err, body)
	}
	return fams
}

// Family returns the family name, failing the test when it is absent.
func (f Families) Family(t testing.TB, name string) *dto.MetricFamily {
	t.Helper()
	mf := f[name]
	if mf == nil || len(mf.Metric) == 0 {
		t.Fatalf("no %s in the scrape", name)
	}
	return mf
}

// Value is the value of the sample of family name whose labels include
// labels (pairs: name, value), failing the test when there is none. A
// histogram's value is its sample count.
func (f Families) Value(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	v, ok := f.Lookup(name, labels...)
	if !ok {
		t.Fatalf("no %s%v in the scrape (series: %s)", name, labels, f.Series(name))
	}
	return v
}

// Lookup is Value without failing.
func (f Families) Lookup(name string, labels ...string) (float64, bool) {
	mf := f[name]
	if mf == nil {
		return 0, false
	}
next:
	for _, m := range mf.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.Label {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		}
	}
	return 0, false
}

// Sum adds the values of every sample of family name.
func (f Families) Sum(name string) float64 {
	var s float64
	mf := f[name]
	if mf == nil {
		return 0
	}
	for _, m := range mf.Metric {
		switch {
		case m.Counter != nil:
			s += m.Counter.GetValue()
		case m.Gauge != nil:
			s += m.Gauge.GetValue()
		case m.Histogram != nil:
			s += float64(m.Histogram.GetSampleCount())
		}
	}
	return s
}

// Series lists the label sets of family name (for failure messages).
func (f Families) Series(name string) string {
	mf := f[name]
	if mf == nil {
		return "none"
	}
	var out []string
	for _, m := range mf.Metric {
		var ls []string
		for _, lp := range m.Label {
			ls = append(ls, lp.GetName()+"="+lp.GetValue())
		}
		out = append(out, "{"+strings.Join(ls, ",")+"}")
	}
	return strings.Join(out, " ")
}

// Promtool runs `promtool check metrics` on body and fails the test on
// any problem it reports. Without promtool the test is skipped, unless
// CI=true, where it fails (.ci/run installs it).
func Promtool(t testing.TB, body string) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("promtool is not installed (Debian package prometheus; .ci/run installs it): %v", err)
		}
		t.Skipf("promtool is not installed (Debian package prometheus), and CI is not set: skipping its check")
	}
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil || strings.TrimSpace(out.String()) != "" {
		t.Fatalf("promtool check metrics: %v\n%s", err, out.String())
	}
}
