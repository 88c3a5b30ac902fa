// Command tcpbench measures one TCP stream: the server accepts one
// connection, counts what arrives until EOF and prints the rate; the client
// sends as fast as it can for a while.
//
//	tcpbench -server 10.200.1.1:5201            # prints "<bits/s> <bytes> <seconds>"
//	tcpbench -client 10.200.1.1:5201 -t 5s
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

func main() {
	server := flag.String("server", "", "listen address")
	client := flag.String("client", "", "server address")
	d := flag.Duration("t", 5*time.Second, "how long the client sends")
	flag.Parse()
	switch {
	case *server != "":
		l, err := net.Listen("tcp", *server)
		if err != nil {
			fail(err)
		}
		fmt.Println("listening")
		c, err := l.Accept()
		if err != nil {
			fail(err)
		}
		buf := make([]byte, 256<<10)
		var n int64
		var start time.Time
		for {
			k, err := c.Read(buf)
			if n == 0 && k > 0 {
				start = time.Now()
			}
			n += int64(k)
			if err == io.EOF {
				break
			}
			if err != nil {
				fail(err)
			}
		}
		secs := time.Since(start).Seconds()
		fmt.Printf("%.0f %d %.3f\n", float64(n)*8/secs, n, secs)
	case *client != "":
		c, err := net.Dial("tcp", *client)
		if err != nil {
			fail(err)
		}
		buf := make([]byte, 256<<10)
		end := time.Now().Add(*d)
		for time.Now().Before(end) {
			if _, err := c.Write(buf); err != nil {
				fail(err)
			}
		}
		c.Close()
	default:
		fail(fmt.Errorf("-server or -client"))
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "tcpbench:", err)
	os.Exit(1)
}
