package enroll

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync/atomic"
	"time"
)

// Route is how the appliance reaches the control plane during first boot:
// names are resolved with first boot's own DNS servers (not the host's
// resolv.conf, which under --root belongs to someone else) and connections
// go through an injectable dialer. Preflight checks the same route
// enrollment then uses.
type Route struct {
	// Resolver resolves the control plane's name; nil is net.DefaultResolver.
	Resolver *net.Resolver
	// Dial dials one address; nil is a net.Dialer with a 10 s timeout.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// ResolverFor returns a Go resolver that asks servers directly, round
// robin, so it works before resolv.conf exists; no servers gives
// net.DefaultResolver.
func ResolverFor(servers []netip.Addr) *net.Resolver {
	if len(servers) == 0 {
		return net.DefaultResolver
	}
	var i atomic.Uint32 // the Go resolver dials concurrently (A and AAAA)
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		s := servers[int(i.Add(1)-1)%len(servers)]
		var d net.Dialer
		return d.DialContext(ctx, network, netip.AddrPortFrom(s, 53).String())
	}}
}

// LookupHost resolves host on the route.
func (r Route) LookupHost(ctx context.Context, host string) ([]string, error) {
	res := r.Resolver
	if res == nil {
		res = net.DefaultResolver
	}
	return res.LookupHost(ctx, host)
}

// DialAddr dials addr (an address, not a name) as it is.
func (r Route) DialAddr(ctx context.Context, network, addr string) (net.Conn, error) {
	if r.Dial != nil {
		return r.Dial(ctx, network, addr)
	}
	d := net.Dialer{Timeout: 10 * time.Second}
	return d.DialContext(ctx, network, addr)
}

// DialContext resolves the host of addr on the route and dials its
// addresses in turn.
func (r Route) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if net.ParseIP(host) != nil {
		return r.DialAddr(ctx, network, addr)
	}
	addrs, err := r.LookupHost(ctx, host)
	if err != nil {
		return nil, err
	}
	var last error
	for _, a := range addrs {
		c, err := r.DialAddr(ctx, network, net.JoinHostPort(a, port))
		if err == nil {
			return c, nil
		}
		last = err
	}
	return nil, last
}

// Transport returns the HTTP transport enrollment uses on the route
// (Client.Transport); the client installs the pinned TLS configuration and
// the proxy on a copy.
func (r Route) Transport() *http.Transport {
	return &http.Transport{
		ForceAttemptHTTP2:   true,
		TLSHandshakeTimeout: 15 * time.Second,
		DialContext:         r.DialContext,
	}
}

// Connect asks an HTTP proxy on conn for a tunnel to hostport, as the
// transport does through Client.Proxy; preflight uses it to check the
// proxy path by hand.
func Connect(ctx context.Context, conn net.Conn, hostport string) error {
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
		defer conn.SetDeadline(time.Time{})
	}
	req := &http.Request{Method: http.MethodConnect, URL: &url.URL{Opaque: hostport}, Host: hostport, Header: http.Header{}}
	if err := req.Write(conn); err != nil {
		return fmt.Errorf("proxy CONNECT: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return fmt.Errorf("proxy CONNECT: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("proxy refused CONNECT %s: %s", hostport, resp.Status)
	}
	return nil
}
