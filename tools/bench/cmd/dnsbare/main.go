// Command dnsbare is the baseline of the DNS benchmark: a bare miekg/dns
// UDP server with default settings, answering A queries from a static map
// of the same names the daemon holds, NXDOMAIN otherwise.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"

	"github.com/miekg/dns"
)

func main() {
	addr := flag.String("addr", "127.0.0.2:53", "listen address (udp)")
	n := flag.Int("names", 1000, "names svc-<i>.bench.local, i < names")
	flag.Parse()
	records := map[string]net.IP{}
	for i := 0; i < *n; i++ {
		records[fmt.Sprintf("svc-%d.bench.local.", i)] = net.IPv4(10, 201, byte(i/256), byte(i%256))
	}
	dns.HandleFunc(".", func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Authoritative = true
		if ip, ok := records[r.Question[0].Name]; ok && r.Question[0].Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5}, A: ip})
		} else {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	srv := &dns.Server{Addr: *addr, Net: "udp", NotifyStartedFunc: func() { fmt.Println("ready") }}
	log.Fatal(srv.ListenAndServe())
}
