// talos_compat checks, with Go's own crypto/tls and crypto/x509 (the stack
// Talos's apid, trustd clients and talosctl are built on), what a Talos
// worker and talosctl do with the signer and with what it issued:
//
//  1. worker -> signer: TLS with RootCAs = the worker's accepted CAs, the
//     endpoint given as an IP (no SNI, IP SAN required), ALPN h2;
//  2. talosctl -> apid: apid serves the issued certificate and requires client
//     certificates that chain to the returned bundle; talosctl trusts the OS
//     CA, dials the worker IP and presents an os:admin client certificate;
//  3. the issued certificate cannot be used as a client certificate.
//
// Standard library only. Exit status 0 only if every check passes.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

func pool(path string) *x509.CertPool {
	pem, err := os.ReadFile(path)
	check(err, "read "+path)
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pem) {
		fail("no certificates in " + path)
	}
	return p
}

func check(err error, what string) {
	if err != nil {
		fail(what + ": " + err.Error())
	}
}

func fail(msg string) {
	fmt.Println("FAIL", msg)
	os.Exit(1)
}

func main() {
	signer := flag.String("signer", "", "signer address IP:PORT")
	osCA := flag.String("ca", "", "machine (OS) CA certificate")
	crt := flag.String("crt", "", "issued certificate")
	key := flag.String("key", "", "its key")
	bundle := flag.String("bundle", "", "the ca bundle the signer returned")
	adminCrt := flag.String("admin-crt", "", "talosctl client certificate (O=os:admin)")
	adminKey := flag.String("admin-key", "", "its key")
	ip := flag.String("ip", "127.0.0.1", "the worker IP talosctl dials")
	flag.Parse()

	// 1. The worker's TLS to the signer.
	host, _, err := net.SplitHostPort(*signer)
	check(err, "signer address")
	conn, err := tls.Dial("tcp", *signer, &tls.Config{RootCAs: pool(*osCA), ServerName: host, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12})
	check(err, "worker TLS handshake with the signer")
	state := conn.ConnectionState()
	conn.Close()
	if state.NegotiatedProtocol != "h2" {
		fail("signer negotiated ALPN " + state.NegotiatedProtocol + ", not h2")
	}
	version := map[uint16]string{tls.VersionTLS12: "TLS 1.2", tls.VersionTLS13: "TLS 1.3"}[state.Version]
	fmt.Printf("ok   worker -> signer: %s, %s, ALPN h2, serving cert verified for IP %s\n", version, tls.CipherSuiteName(state.CipherSuite), host)

	// 2. apid serves the issued certificate; talosctl connects.
	apidCert, err := tls.LoadX509KeyPair(*crt, *key)
	check(err, "load issued certificate")
	leaf, err := x509.ParseCertificate(apidCert.Certificate[0])
	check(err, "parse issued certificate")
	_, err = leaf.Verify(x509.VerifyOptions{Roots: pool(*osCA), DNSName: *ip, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, CurrentTime: time.Now()})
	check(err, "x509 verification of the issued certificate as talosctl does it")
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{apidCert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool(*bundle)})
	check(err, "apid listener")
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.(*tls.Conn).Handshake()
				_, _ = io.WriteString(c, "apid")
			}()
		}
	}()
	admin, err := tls.LoadX509KeyPair(*adminCrt, *adminKey)
	check(err, "load the admin client certificate")
	dial := func(cert tls.Certificate) error {
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool(*osCA), ServerName: *ip, Certificates: []tls.Certificate{cert}})
		if err != nil {
			return err
		}
		defer c.Close()
		buf := make([]byte, 4)
		_, err = io.ReadFull(c, buf)
		return err
	}
	check(dial(admin), "talosctl -> apid with the issued certificate")
	fmt.Printf("ok   talosctl -> apid: issued certificate verified for IP %s, admin client certificate accepted against the returned bundle\n", *ip)

	// 3. The issued certificate is no client credential.
	if err := dial(apidCert); err == nil {
		fail("apid accepted the issued (server) certificate as a client certificate")
	}
	fmt.Println("ok   the issued certificate is refused as a client certificate")
	fmt.Println("PASS")
}
