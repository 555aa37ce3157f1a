// talos_compat checks, with Go's own crypto/tls, crypto/x509 and net/http
// (the stack Talos's apid, trustd clients and talosctl are built on), what a
// Talos worker and talosctl do with the signer and with what it issued:
//
//  1. worker -> signer: TLS with RootCAs = the worker's accepted CAs, the
//     endpoint given as an IP (no SNI, IP SAN required) or, with
//     -server-name, as a DNS name (SNI, DNS SAN required), ALPN h2. With
//     -token-file it then makes the worker's call itself: a fresh key of the
//     type of its last accepted CA, a CSR, securityapi.SecurityService/
//     Certificate over HTTP/2 with the `token` metadata, and checks the
//     answer as a worker would use it;
//  2. talosctl -> apid: apid serves the issued certificate and requires client
//     certificates that chain to the returned bundle; talosctl trusts the OS
//     CA, dials the worker IP and presents an os:admin client certificate;
//  3. the issued certificate cannot be used as a client certificate.
//
// Standard library only. Exit status 0 only if every check passes.
package main

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"time"
)

func readCerts(path string) []*x509.Certificate {
	data, err := os.ReadFile(path)
	check(err, "read "+path)
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		c, err := x509.ParseCertificate(block.Bytes)
		check(err, "parse a certificate in "+path)
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		fail("no certificates in " + path)
	}
	return certs
}

func pool(path string) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range readCerts(path) {
		p.AddCert(c)
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

func split(list string) []string {
	var out []string
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// newKey makes a key of the type of `ca`'s key, as a Talos worker keys its
// CSR like its last accepted CA.
func newKey(ca *x509.Certificate) crypto.Signer {
	var key crypto.Signer
	var err error
	switch pub := ca.PublicKey.(type) {
	case ed25519.PublicKey:
		_, key, err = ed25519.GenerateKey(rand.Reader)
	case *ecdsa.PublicKey:
		key, err = ecdsa.GenerateKey(pub.Curve, rand.Reader)
	case *rsa.PublicKey:
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		fail(fmt.Sprintf("unexpected CA key type %T", pub))
	}
	check(err, "generate the worker key")
	return key
}

// grpcFrame is one length-prefixed, uncompressed gRPC message.
func grpcFrame(msg []byte) []byte {
	out := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(out[1:], uint32(len(msg)))
	return append(out, msg...)
}

// bytesField encodes protobuf field `n` of wire type 2 (bytes).
func bytesField(n int, data []byte) []byte {
	out := binary.AppendUvarint(nil, uint64(n<<3|2))
	out = binary.AppendUvarint(out, uint64(len(data)))
	return append(out, data...)
}

// parseResponse reads CertificateResponse{ca = 1, crt = 2} from a gRPC body.
func parseResponse(body []byte) (ca, crt []byte, err error) {
	if len(body) < 5 || body[0] != 0 || int(binary.BigEndian.Uint32(body[1:5])) != len(body)-5 {
		return nil, nil, fmt.Errorf("not one uncompressed gRPC message (%d bytes)", len(body))
	}
	msg := body[5:]
	for len(msg) > 0 {
		tag, n := binary.Uvarint(msg)
		if n <= 0 || tag&7 != 2 {
			return nil, nil, errors.New("unexpected protobuf field")
		}
		msg = msg[n:]
		size, n := binary.Uvarint(msg)
		if n <= 0 || uint64(len(msg)-n) < size {
			return nil, nil, errors.New("truncated protobuf field")
		}
		value := msg[n : n+int(size)]
		msg = msg[n+int(size):]
		switch tag >> 3 {
		case 1:
			ca = value
		case 2:
			crt = value
		}
	}
	return ca, crt, nil
}

// certificateCall is the worker's unary call, over net/http's HTTP/2.
func certificateCall(signer string, cfg *tls.Config, token string, csr []byte) (ca, crt []byte, err error) {
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest("POST", "https://"+signer+"/securityapi.SecurityService/Certificate",
		bytes.NewReader(grpcFrame(bytesField(1, csr))))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	req.Header.Set("Token", token)
	client := http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, err
	}
	if resp.ProtoMajor != 2 {
		return nil, nil, fmt.Errorf("answered over %s, not HTTP/2", resp.Proto)
	}
	// A refusal may come as headers only; an answer has the status in trailers.
	status, message := resp.Trailer.Get("Grpc-Status"), resp.Trailer.Get("Grpc-Message")
	if status == "" {
		status, message = resp.Header.Get("Grpc-Status"), resp.Header.Get("Grpc-Message")
	}
	if status != "0" {
		return nil, nil, fmt.Errorf("grpc-status %s: %s", status, message)
	}
	return parseResponse(body)
}

// workerCall requests a certificate as a Talos worker and checks it as the
// worker's apid will use it; returns the TLS pair and the bundle's path.
func workerCall(signer string, cfg *tls.Config, roots []*x509.Certificate, tokenFile, cn string, ips, names []string, out string) (tls.Certificate, string) {
	tokenBytes, err := os.ReadFile(tokenFile)
	check(err, "read the token file")
	token := strings.TrimSpace(strings.SplitN(string(tokenBytes), "\n", 2)[0])
	key := newKey(roots[len(roots)-1])
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, DNSNames: names}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	check(err, "make the CSR")
	csr := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	caPEM, crtPEM, err := certificateCall(signer, cfg, token, csr)
	check(err, "the worker's Certificate call")
	block, _ := pem.Decode(crtPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		fail("crt is not a PEM certificate")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	check(err, "parse crt")
	verifyIssued(leaf, key, roots, cn, ips, names)
	check(os.MkdirAll(out, 0o700), "make "+out)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	check(err, "encode the worker key")
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	bundle := filepath.Join(out, "ca.pem")
	check(os.WriteFile(bundle, caPEM, 0o600), "write the bundle")
	pair, err := tls.X509KeyPair(crtPEM, keyPEM)
	check(err, "issued certificate and worker key as a TLS pair")
	fmt.Printf("ok   worker call: %s certificate for CN=%s, chain, key, SANs and usages checked, bundle of %d CA(s)\n",
		keyName(key), cn, len(readCerts(bundle)))
	return pair, bundle
}

func keyName(k crypto.Signer) string {
	switch k.(type) {
	case ed25519.PrivateKey:
		return "Ed25519"
	case *ecdsa.PrivateKey:
		return "ECDSA " + k.(*ecdsa.PrivateKey).Curve.Params().Name
	default:
		return "RSA"
	}
}

func verifyIssued(leaf *x509.Certificate, key crypto.Signer, roots []*x509.Certificate, cn string, ips, names []string) {
	p := x509.NewCertPool()
	for _, c := range roots {
		p.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: p, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	check(err, "issued certificate against the worker's accepted CAs")
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if !key.Public().(equaler).Equal(leaf.PublicKey) {
		fail("the issued certificate is not for the worker's key")
	}
	if leaf.Subject.CommonName != cn || len(leaf.Subject.Organization) != 0 {
		fail("subject " + leaf.Subject.String())
	}
	var got []string
	for _, ip := range leaf.IPAddresses {
		got = append(got, ip.String())
	}
	sorted := func(s []string) []string {
		s = append([]string(nil), s...)
		sort.Strings(s)
		return s
	}
	if !reflect.DeepEqual(sorted(got), sorted(ips)) || !reflect.DeepEqual(sorted(leaf.DNSNames), sorted(names)) {
		fail(fmt.Sprintf("SANs %v %v, asked for %v %v", got, leaf.DNSNames, ips, names))
	}
	if leaf.IsCA || leaf.KeyUsage != x509.KeyUsageDigitalSignature ||
		!reflect.DeepEqual(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
		fail("usages: CA, key usage or extended key usage not as trustd issues them")
	}
	if now := time.Now(); now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		fail("the issued certificate is not valid now")
	}
}

func main() {
	signer := flag.String("signer", "", "signer address IP:PORT")
	serverName := flag.String("server-name", "", "name the worker dials (SNI, DNS SAN); default: the signer's IP (no SNI)")
	osCA := flag.String("ca", "", "the worker's accepted CAs (the OS CA last)")
	tokenFile := flag.String("token-file", "", "make the worker's Certificate call with this token")
	cn := flag.String("cn", "worker-1", "with -token-file: the CSR's common name")
	ips := flag.String("ips", "127.0.0.1,10.5.0.7", "with -token-file: IP SANs, comma-separated")
	names := flag.String("dns", "worker-1", "with -token-file: DNS SANs, comma-separated")
	out := flag.String("out", "", "with -token-file: where to write the bundle")
	crt := flag.String("crt", "", "issued certificate (without -token-file)")
	key := flag.String("key", "", "its key")
	bundle := flag.String("bundle", "", "the ca bundle the signer returned")
	adminCrt := flag.String("admin-crt", "", "talosctl client certificate (O=os:admin)")
	adminKey := flag.String("admin-key", "", "its key")
	ip := flag.String("ip", "127.0.0.1", "the worker IP talosctl dials")
	seeds := flag.String("seed-csrs", "", "write worker CSRs (DER) of every key type to this directory and exit: the fuzz corpus seeds")
	flag.Parse()
	if *seeds != "" {
		writeSeedCSRs(*seeds)
		return
	}

	// 1. The worker's TLS to the signer.
	host, _, err := net.SplitHostPort(*signer)
	check(err, "signer address")
	name := host
	if *serverName != "" {
		name = *serverName
	}
	cfg := &tls.Config{RootCAs: pool(*osCA), ServerName: name, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12}
	conn, err := tls.Dial("tcp", *signer, cfg)
	check(err, "worker TLS handshake with the signer")
	state := conn.ConnectionState()
	conn.Close()
	if state.NegotiatedProtocol != "h2" {
		fail("signer negotiated ALPN " + state.NegotiatedProtocol + ", not h2")
	}
	version := map[uint16]string{tls.VersionTLS12: "TLS 1.2", tls.VersionTLS13: "TLS 1.3"}[state.Version]
	how := "IP " + host + " (no SNI)"
	if *serverName != "" {
		how = "name " + name + " (SNI)"
	}
	fmt.Printf("ok   worker -> signer: %s, %s, ALPN h2, serving cert verified for %s\n", version, tls.CipherSuiteName(state.CipherSuite), how)

	var apidCert tls.Certificate
	if *tokenFile != "" {
		dir := *out
		if dir == "" {
			dir, err = os.MkdirTemp("", "talos-compat")
			check(err, "temporary directory")
			defer os.RemoveAll(dir)
		}
		apidCert, *bundle = workerCall(*signer, cfg.Clone(), readCerts(*osCA), *tokenFile, *cn, split(*ips), split(*names), dir)
	} else {
		apidCert, err = tls.LoadX509KeyPair(*crt, *key)
		check(err, "load issued certificate")
	}
	if *adminCrt == "" {
		fmt.Println("PASS")
		return
	}

	// 2. apid serves the issued certificate; talosctl connects.
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

// writeSeedCSRs writes one CSR per key type a Talos worker may use, made as
// a Talos worker makes its apid CSR (Go's x509.CreateCertificateRequest: CN
// = node FQDN, DNS SANs = hostname and FQDN, IP SANs = node addresses and
// loopback, no O): tests/fuzz/corpus/issue's seeds.
func writeSeedCSRs(dir string) {
	check(os.MkdirAll(dir, 0o755), "make "+dir)
	keys := map[string]func() (crypto.Signer, error){
		"ed25519": func() (crypto.Signer, error) { _, k, err := ed25519.GenerateKey(rand.Reader); return k, err },
		"p256":    func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) },
		"p384":    func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P384(), rand.Reader) },
		"p521":    func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P521(), rand.Reader) },
		"rsa2048": func() (crypto.Signer, error) { return rsa.GenerateKey(rand.Reader, 2048) },
		"rsa4096": func() (crypto.Signer, error) { return rsa.GenerateKey(rand.Reader, 4096) },
	}
	for name, gen := range keys {
		key, err := gen()
		check(err, "generate a "+name+" key")
		tmpl := &x509.CertificateRequest{
			Subject:     pkix.Name{CommonName: "talos-worker-1.cluster.example"},
			DNSNames:    []string{"talos-worker-1", "talos-worker-1.cluster.example"},
			IPAddresses: []net.IP{net.ParseIP("10.5.0.7"), net.ParseIP("fd00::7"), net.ParseIP("127.0.0.1")},
		}
		der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
		check(err, "make the "+name+" CSR")
		check(os.WriteFile(filepath.Join(dir, "talos-"+name+".der"), der, 0o644), "write the "+name+" CSR")
	}
	fmt.Printf("wrote %d worker CSRs to %s\n", len(keys), dir)
}
