// A Go crypto/tls echo, as a peer for benches/compare.sh: one goroutine per connection,
// io.Copy back to the client (Go sets TCP_NODELAY by default).
//
//	go run echo.go CERT KEY 127.0.0.1:4445
package main

import (
	"crypto/tls"
	"io"
	"log"
	"net"
	"os"
)

func main() {
	if len(os.Args) != 4 {
		log.Fatal("usage: echo CERT KEY ADDR")
	}
	cert, err := tls.LoadX509KeyPair(os.Args[1], os.Args[2])
	if err != nil {
		log.Fatal(err)
	}
	ln, err := tls.Listen("tcp", os.Args[3], &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		log.Fatal(err)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			continue
		}
		go func(c net.Conn) {
			defer c.Close()
			io.Copy(c, c)
		}(c)
	}
}
