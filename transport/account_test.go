package transport

import (
	"context"
	"testing"
	"time"
)

// TestUsageByClass: the bytes of a flow of class 1 are counted in class 1
// on every path that carried them, each way, and its flow bytes as
// offered at the sender and delivered at the receiver.
func TestUsageByClass(t *testing.T) {
	// Both ends hold the tier's two classes (a concentrator files a
	// class its tier lacks under the default).
	terms := Terms{Classes: []ClassTerms{{Name: "default"}, {Name: "bulk"}}}
	ts := newTestServer(t, Config{Terms: terms}, nil)
	pds := []PathDialer{dialerTo("a", ts.addr(), ts.pin), dialerTo("b", ts.addr(), ts.pin)}
	c := dialClient(t, Config{M: 1, Terms: terms}, pds)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f, err := c.OpenFlowClass(ctx, []byte{1, 127, 0, 0, 1, 0, 80}, 1)
	if err != nil {
		t.Fatal(err)
	}
	const n = 2 << 20
	transfer(t, f, n, 7)
	f.Close()

	var u Usage
	c.Usage(&u)
	if len(u.Classes) != 2 || u.Classes[1].Name != "bulk" {
		t.Fatalf("classes %+v", u.Classes)
	}
	if got := u.Classes[1].Offered; got != n {
		t.Errorf("class 1 offered %d, want %d", got, n)
	}
	if got := u.Classes[1].Delivered; got != n {
		t.Errorf("class 1 delivered %d (the echo), want %d", got, n)
	}
	var sent, cls uint64
	for _, p := range u.Paths {
		if p.Key == 0 {
			t.Errorf("path %s has no key", p.Name)
		}
		sent += p.Sent
		cls += p.ClassSent[1]
		if p.ClassSent[1] > p.Sent || p.ClassReceived[1] > p.Received {
			t.Errorf("path %s: class bytes %d/%d over its total %d/%d", p.Name, p.ClassSent[1], p.ClassReceived[1], p.Sent, p.Received)
		}
	}
	if sent < n || cls < sent*9/10 {
		t.Errorf("sent %d bytes, %d of them in class 1: want nearly all", sent, cls)
	}
	// The concentrator's side saw what the client sent, in the same class.
	var srv *Session
	if !eventually(5*time.Second, func() bool {
		if l := ts.list(); len(l) == 1 {
			srv = l[0]
			var su Usage
			srv.Usage(&su)
			var rcv uint64
			for _, p := range su.Paths {
				rcv += p.ClassReceived[1]
			}
			return rcv >= cls-cls/100 // a late re-sent shard of the ended flow counts in class 0
		}
		return false
	}) {
		t.Fatal("the concentrator never counted the client's class 1 bytes")
	}
}

// TestAccountCountsNoAllocs: counting a shard allocates nothing.
func TestAccountCountsNoAllocs(t *testing.T) {
	var a pathAccount
	var s sessionAccount
	if n := testing.AllocsPerRun(100, func() {
		a.onSent(1, 1200)
		a.onReceived(20, 1200)
		s.onDelivered(1, 1000)
	}); n != 0 {
		t.Errorf("%v allocations per count", n)
	}
	if a.received[0].Load() == 0 {
		t.Error("a class out of range was not counted as the default class")
	}
}

// TestWireBytes: a path's wire bytes hold its shards and QUIC's own, and
// keep what a connection carried after it closes.
func TestWireBytes(t *testing.T) {
	ts := newTestServer(t, Config{}, nil)
	pd := dialerTo("a", ts.addr(), ts.pin)
	pd.Conns = 2
	c := dialClient(t, Config{}, []PathDialer{pd})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p := c.Paths()[0]
	if !eventually(5*time.Second, func() bool { p.mu.Lock(); defer p.mu.Unlock(); return len(p.conns) == 2 }) {
		t.Fatal("the path never had 2 connections")
	}
	f, err := c.OpenFlow(ctx, []byte{1, 127, 0, 0, 1, 0, 80})
	if err != nil {
		t.Fatal(err)
	}
	transfer(t, f, 1<<20, 3)
	var u Usage
	c.Usage(&u)
	before := u.Paths[0]
	if before.WireSent < before.Sent || before.WireReceived < before.Received || before.Sent < 1<<20 {
		t.Fatalf("wire %d/%d below shards %d/%d", before.WireSent, before.WireReceived, before.Sent, before.Received)
	}
	p.mu.Lock()
	victim := p.conns[0]
	p.mu.Unlock()
	victim.close(nil)
	for range 50 {
		c.Usage(&u)
		if u.Paths[0].WireSent < before.WireSent || u.Paths[0].WireReceived < before.WireReceived {
			t.Fatalf("wire bytes went back from %d/%d to %d/%d as a connection closed",
				before.WireSent, before.WireReceived, u.Paths[0].WireSent, u.Paths[0].WireReceived)
		}
		time.Sleep(2 * time.Millisecond)
	}
	p.mu.Lock()
	retired := p.acct.retiredSent
	p.mu.Unlock()
	if retired == 0 {
		t.Error("the closed connection's bytes were not kept")
	}
}
