package status

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"braid/transport"
	"braid/transport/pathmon"
	"braid/transport/wire"
)

func TestFromStats(t *testing.T) {
	s := transport.PathStats{Name: "lte", Medium: wire.MediumCellular, Operator: wire.OperatorPartner,
		PriceGB: 3, State: pathmon.StateDegraded, Conns: 2, RTT: 41500 * time.Microsecond,
		Loss: 0.02, DeliveryBps: 18e6, BytesSent: 1e9, BytesReceived: 1e9}
	p := FromStats(s, "")
	if p.Medium != "cellular" || p.Operator != "partner" || p.State != "degraded" || p.RTTMs != 41.5 {
		t.Fatalf("converted %+v", p)
	}
	if p.CostUSD != 6 { // 2 GB at $3
		t.Fatalf("cost %v, want 6", p.CostUSD)
	}
	if p.MappedAddr != nil {
		t.Fatal("unknown mapped address must be null")
	}
	b, _ := json.Marshal(p)
	if !strings.Contains(string(b), `"mapped_addr":null`) {
		t.Fatalf("JSON %s", b)
	}
	if q := FromStats(s, "203.0.113.5:4000"); q.MappedAddr == nil || *q.MappedAddr != "203.0.113.5:4000" {
		t.Fatal("mapped address lost")
	}
	if p.LinkLoss != nil || p.Parity != nil || p.Repaired != nil || !strings.Contains(string(b), `"parity":null`) {
		t.Fatalf("a path that does not code shows coding: %s", b)
	}
	s.Coded, s.LinkLoss, s.DataPackets, s.ParityPackets, s.Repaired = 2, 0.03, 1000, 125, 40
	if q := FromStats(s, ""); q.LinkLoss == nil || *q.LinkLoss != 0.03 || *q.Parity != 0.125 || *q.Repaired != 40 {
		t.Fatalf("coding %+v", q)
	}
	s.ParityHeld = "full"
	if q := FromStats(s, ""); q.ParityHeld != "full" {
		t.Fatalf("parity held: %q", q.ParityHeld)
	}
	// Probing costs what shards cost.
	s.ProbeBytesSent, s.ProbeBytesReceived = 0.5e9, 0.5e9
	if q := FromStats(s, ""); q.CostUSD != 9 {
		t.Fatalf("cost with 1 GB of probing %v, want 9", q.CostUSD)
	}
	// The client sends up, the concentrator down.
	s.SendBps, s.ReceiveBps = 1e6, 9e6
	if q := fromStats(s, "", true); q.UploadBps != 1e6 || q.DownloadBps != 9e6 {
		t.Fatalf("client's rates %v up %v down", q.UploadBps, q.DownloadBps)
	}
	if q := fromStats(s, "", false); q.UploadBps != 9e6 || q.DownloadBps != 1e6 {
		t.Fatalf("concentrator's rates %v up %v down", q.UploadBps, q.DownloadBps)
	}
}

func TestWriteTable(t *testing.T) {
	var b strings.Builder
	WriteTable(&b, []Path{FromStats(transport.PathStats{Name: "fiber", State: pathmon.StateUp, DeliveryBps: 2.5e9, BytesSent: 1500}, ""),
		FromStats(transport.PathStats{Name: "lte", Coded: 1, LinkLoss: 0.012, DataPackets: 200, ParityPackets: 9}, ""),
		FromStats(transport.PathStats{Name: "wifi", Coded: 1, LinkLoss: 0.01, DataPackets: 200, ParityHeld: "full"}, "")}, 3)
	out := b.String()
	for _, want := range []string{"PATH", "fiber", "up", "2.50 Gbit/s", "1.5 KB", "LINK LOSS", "1.20%", "4.5%",
		"0.0% (held: full)"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
