package main

import (
	"bytes"
	"encoding/base64"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"braid/client"
	"braid/internal/netx"
	"braid/internal/pki"
)

// testPin is a syntactically valid pin of no real key.
var testPin = "sha256:" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))

func TestParsePath(t *testing.T) {
	ip := netip.MustParseAddr
	tests := []struct {
		arg     string
		want    client.PathConfig
		wantErr string // substring of the one-line error
	}{
		{arg: "fiber=192.168.1.10", want: client.PathConfig{Name: "fiber", Bind: netx.Bind{IP: ip("192.168.1.10")}}},
		{arg: "fiber=ip:192.168.1.10", want: client.PathConfig{Name: "fiber", Bind: netx.Bind{IP: ip("192.168.1.10")}}},
		{arg: "v6=ip:2001:db8::1,conns=3", want: client.PathConfig{Name: "v6", Bind: netx.Bind{IP: ip("2001:db8::1")}, Conns: 3}},
		{arg: "lte=dev:wwan0", want: client.PathConfig{Name: "lte", Bind: netx.Bind{Device: "wwan0"}}},
		{arg: "lte=dev:wwan0,ip=10.0.0.2", want: client.PathConfig{Name: "lte", Bind: netx.Bind{IP: ip("10.0.0.2"), Device: "wwan0"}}},
		{arg: "x=any", want: client.PathConfig{Name: "x"}},
		{arg: "x=server=example.net:443", want: client.PathConfig{Name: "x", Server: "example.net:443"}},
		{
			arg: "fiber=192.168.1.10,price=0.1,medium=ethernet",
			want: client.PathConfig{Name: "fiber", Bind: netx.Bind{IP: ip("192.168.1.10")},
				PriceGB: 0.1, Medium: "ethernet"},
		},
		{
			arg: "lte=dev:wwan0,price=3,medium=cellular,operator=partner,conns=2,server=1.2.3.4:443",
			want: client.PathConfig{Name: "lte", Bind: netx.Bind{Device: "wwan0"}, Server: "1.2.3.4:443",
				Conns: 2, PriceGB: 3, Medium: "cellular", Operator: "partner"},
		},
		{arg: "w=any, medium=WiFi , operator=own", want: client.PathConfig{Name: "w", Medium: "wifi", Operator: "own"}},
		{arg: "s=any,medium=satellite,price=0", want: client.PathConfig{Name: "s", Medium: "satellite"}},
		{arg: "o=any,medium=other", want: client.PathConfig{Name: "o", Medium: "other"}},
		{arg: "n=any,stun=stun.example.net:3478", want: client.PathConfig{Name: "n", STUN: "stun.example.net:3478"}},
		{arg: "n=any,stun=nope", wantErr: `--path n: stun "nope" is not HOST:PORT`},
		{arg: "n=any,rate=20.5", want: client.PathConfig{Name: "n", RateMbps: 20.5}},
		{arg: "n=any,rate=-1", wantErr: `--path n: rate "-1" is not a number >= 0 (Mbit/s)`},

		{arg: "noequals", wantErr: `--path: "noequals" is not NAME=SPEC`},
		{arg: "=127.0.0.1", wantErr: `--path: "=127.0.0.1" has no name before =`},
		{arg: "x=", wantErr: "--path x: no binding"},
		{arg: "x=eth0", wantErr: `--path x: "eth0" is not an IP address, ip:ADDR, dev:IFNAME or any`},
		{arg: "x=ip:nope", wantErr: `--path x: "ip:nope" is not an IP address`},
		{arg: "x=dev:", wantErr: "--path x: dev needs an interface name"},
		{arg: "x=any,color=red", wantErr: `--path x: unknown key "color"`},
		{arg: "x=any,conns", wantErr: `--path x: "conns" is not KEY=VALUE`},
		{arg: "x=any,conns=two", wantErr: `--path x: conns "two" is not a number from 1 to 16`},
		{arg: "x=any,conns=0", wantErr: `--path x: conns "0" is not a number from 1 to 16`},
		{arg: "x=any,conns=17", wantErr: `--path x: conns "17" is not a number from 1 to 16`},
		{arg: "x=any,price=cheap", wantErr: `--path x: price "cheap" is not a number >= 0`},
		{arg: "x=any,price=-1", wantErr: `--path x: price "-1" is not a number >= 0`},
		{arg: "x=any,price=NaN", wantErr: `--path x: price "NaN" is not a number >= 0`},
		{arg: "x=any,price=Inf", wantErr: `--path x: price "Inf" is not a number >= 0`},
		{arg: "lte=any,medium=tv", wantErr: `--path lte: medium "tv" is not ethernet, wifi, cellular, satellite or other`},
		{arg: "x=any,operator=rival", wantErr: `--path x: operator "rival" is not own or partner`},
		{arg: "x=any,server=nope", wantErr: `--path x: server "nope" is not HOST:PORT`},
		{arg: "x=any,ip=10.0.0.1", wantErr: "--path x: ip given twice"},
		{arg: "x=10.0.0.1,ip=10.0.0.2", wantErr: "--path x: ip given twice"},
		{arg: "x=any,conns=1,conns=2", wantErr: "--path x: conns given twice"},
	}
	for _, tt := range tests {
		got, err := parsePath(tt.arg)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parsePath(%q) error = %v, want %q", tt.arg, err, tt.wantErr)
			}
			if _, ok := err.(*usageError); !ok {
				t.Errorf("parsePath(%q) error is %T, want *usageError", tt.arg, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("parsePath(%q): %v", tt.arg, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parsePath(%q) = %+v, want %+v", tt.arg, got, tt.want)
		}
	}
}

// clientArgs are valid client flags apart from the paths.
func clientArgs(extra ...string) []string {
	return append([]string{"--server", "127.0.0.1:4433", "--pin", testPin, "--token", "secret"}, extra...)
}

func TestParseClient(t *testing.T) {
	cfg, err := parseClient(clientArgs("--path", "a=127.0.0.1", "--path", "b=any,medium=wifi",
		"--fec", "8,2", "--grace", "5s", "--socks", "127.0.0.1:9999"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := pki.ParsePin(testPin)
	switch {
	case cfg.Server != "127.0.0.1:4433" || cfg.Token != "secret" || cfg.Pin != want:
		t.Errorf("server/token/pin = %q %q %x", cfg.Server, cfg.Token, cfg.Pin)
	case cfg.SOCKS != "127.0.0.1:9999":
		t.Errorf("SOCKS = %q", cfg.SOCKS)
	case cfg.Transport.K != 8 || cfg.Transport.M != 2 || cfg.Transport.Grace != 5*time.Second:
		t.Errorf("transport = %+v", cfg.Transport)
	case len(cfg.Paths) != 2 || cfg.Paths[0].Name != "a" || cfg.Paths[1].Medium != "wifi":
		t.Errorf("paths = %+v", cfg.Paths)
	case cfg.Logger == nil:
		t.Error("no logger")
	}

	// Defaults: the SOCKS address, and no paths means the default route.
	cfg, err = parseClient(clientArgs(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SOCKS != "127.0.0.1:1080" || len(cfg.Paths) != 0 {
		t.Errorf("defaults: SOCKS %q, paths %+v", cfg.SOCKS, cfg.Paths)
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// keyFiles makes a key pair in a temporary directory and returns its
// files and pin.
func keyFiles(t *testing.T) (cert, key, pin string) {
	t.Helper()
	dir := t.TempDir()
	pin, err := pki.Keygen(dir, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, pki.CertFileName), filepath.Join(dir, pki.KeyFileName), pin
}

// TestUsageErrors checks that each mistake exits 2 with exactly one line
// on stderr naming the flag at fault, and nothing on stdout.
func TestUsageErrors(t *testing.T) {
	cert, key, _ := keyFiles(t)
	srv := func(extra ...string) []string {
		return append([]string{"server", "--listen", "127.0.0.1:0", "--cert", cert, "--key", key}, extra...)
	}
	cli := func(extra ...string) []string { return append([]string{"client"}, clientArgs(extra...)...) }
	unknownKey := writeFile(t, "c.toml", "server = \"127.0.0.1:1\"\n[[path]]\nname = \"a\"\ncolour = \"red\"\n")
	malformed := writeFile(t, "m.toml", "listen = \"127.0.0.1:1\"\ntokens = [\"a\"\n")
	badPolicy := writeFile(t, "p.toml", "[tiers.basic]\nrevenue_usd_per_gb = -1\n")
	policyExt := writeFile(t, "p.ini", "")
	badType := writeFile(t, "t.toml", "[[path]]\nname = \"a\"\nconns = \"two\"\n")
	both := writeFile(t, "b.toml", "[[path]]\nname = \"a\"\nspec = \"any\"\nmedium = \"wifi\"\n")
	noName := writeFile(t, "n.toml", "[[path]]\nspec = \"any\"\n")

	tests := []struct {
		args []string
		want string // the whole stderr line
	}{
		{[]string{"client", "--server", "127.0.0.1:1", "--pin", testPin}, "braid client: --token is required"},
		{[]string{"client", "--server", "127.0.0.1:1", "--token", "x"}, "braid client: --pin is required (braid keygen prints it)"},
		{cli("--pin", "md5:abc"), `braid client: --pin: "md5:abc" does not start with "sha256:"`},
		{cli("--pin", "sha256:AAAA"), `braid client: --pin: "sha256:AAAA" decodes to 3 bytes, want 32 (a SHA-256 digest)`},
		{cli("--socks-user", "u"), "braid client: --socks-user: needs --socks-pass too"},
		{cli("--socks-pass", "p"), "braid client: --socks-pass: needs --socks-user too"},
		{cli("--socks-user", strings.Repeat("u", 256), "--socks-pass", "p"), "braid client: --socks-user: user and password are at most 255 bytes"},
		{cli("--socks", "nowhere"), `braid client: --socks: "nowhere" is not HOST:PORT`},
		{[]string{"client", "--pin", testPin, "--token", "x"}, "braid client: --server is required (or server= on every path)"},
		{cli("--path", "lte=127.0.0.1,medium=tv"), `braid client: --path lte: medium "tv" is not ethernet, wifi, cellular, satellite or other`},
		{cli("--path", "a=any", "--path", "a=any"), "braid client: --path a: name used twice"},
		{cli("--path", "a=dev:braid-no-such-if0"), `braid client: --path a: interface "braid-no-such-if0" does not exist`},
		{cli("--fec", "8"), `braid client: --fec: "8" is not K,M with K >= 1 and M >= 0 (e.g. 8,2)`},
		{cli("--fec", "200,2"), "braid client: --fec: K 200 is outside"},
		{cli("--grace", "soon"), `braid client: --grace: "soon" is not a duration like 30s or 2m`},
		{cli("--grace", "-1s"), "braid client: --grace: must not be negative"},
		{cli("--scheduler", "fastest"), `braid client: --scheduler: unknown policy "fastest" (known: bestvalue, cheapest, duplicate, minrtt, roundrobin, single:<path>, weighted)`},
		{cli("--cpu", "fast"), `braid client: --cpu: "fast" is not low, mid or high`},
		{cli("--mtu", "100"), "braid client: --mtu: 100 is outside 576..65535"},
		{cli("--packet-coding", "maybe"), `braid client: --packet-coding: "maybe" is not on or off`},
		{cli("--measured-pacing", "sometimes"), `braid client: --measured-pacing: "sometimes" is not on or off`},
		{cli("--log-level", "loud"), `braid client: --log-level: "loud" is not debug, info, warn or error`},
		{cli("--bogus"), "braid client: flag provided but not defined: -bogus"},
		{cli("extra"), `braid client: unexpected argument "extra"`},
		{cli("--config", unknownKey), "braid client: --config " + unknownKey + `: unknown key "path.colour"`},
		{cli("--config", badType), "braid client: --config " + badType + ": toml: line 3"},
		{cli("--config", both), "braid client: --path a: give either spec or ip, dev, server, conns, price, medium and operator"},
		{cli("--config", noName), "braid client: --path: [[path]] number 1 has no name"},
		{cli("--config", "/nonexistent/braid.toml"), "braid client: --config: open /nonexistent/braid.toml: no such file or directory"},

		{srv("--token", "a", "--config", malformed), "braid server: --config " + malformed + ": toml: "},
		{[]string{"server", "--listen", "127.0.0.1:0", "--token", "a"}, "braid server: --cert is required (braid keygen writes one)"},
		{[]string{"server", "--listen", "127.0.0.1:0", "--token", "a", "--cert", cert}, "braid server: --key is required (braid keygen writes one)"},
		{srv("--token", "a", "--cert", "/nonexistent/cert.pem"), "braid server: --cert: open /nonexistent/cert.pem: no such file or directory"},
		{srv("--token", "a", "--cert", key), "braid server: --cert: " + key + ": no CERTIFICATE PEM block"},
		{srv(), "braid server: --token: at least one token is required"},
		{srv("--token-file", "/nonexistent/tokens"), "braid server: --token-file: open /nonexistent/tokens: no such file or directory"},
		{[]string{"server", "--cert", cert, "--key", key, "--token", "a"}, "braid server: --listen is required"},
		{srv("--token", "a", "--listen", "noport"), `braid server: --listen: "noport" is not HOST:PORT`},
		{srv("--token", strings.Repeat("x", 256)), "braid server: --token: tokens are 1 to 255 bytes"},
		{srv("--token", "a", "--policy", badPolicy), "braid server: --policy: policy " + badPolicy + ": tiers.basic.revenue_usd_per_gb: must be >= 0"},
		{srv("--token", "a", "--policy", policyExt), "braid server: --policy: "},
		{srv("--token", "a", "--policy", "/nonexistent/p.toml"), "braid server: --policy: "},
		{srv("--token", "a", "--packet-coding", "no"), `braid server: --packet-coding: "no" is not on or off`},
		{srv("--token", "a", "--measured-pacing", "1"), `braid server: --measured-pacing: "1" is not on or off`},
		{srv("--token", "a", "--scheduler", "fastest"), `braid server: --scheduler: unknown policy "fastest"`},

		{[]string{"keygen"}, "braid keygen: --dir is required"},
		{[]string{"demo", "--duration", "-1s"}, "braid demo: --duration: must not be negative"},
		{[]string{"frobnicate"}, `braid: unknown command "frobnicate" (run 'braid help')`},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		code := run(tt.args, &stdout, &stderr, nil)
		lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
		if code != 2 || len(lines) != 1 || !strings.HasPrefix(lines[0], tt.want) || stdout.Len() != 0 {
			t.Errorf("run %q = %d, stderr %q, stdout %q; want 2 and one line %q",
				tt.args, code, stderr.String(), stdout.String(), tt.want)
		}
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{nil, {"help"}, {"-h"}, {"--help"}} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr, nil); code != 0 || !strings.Contains(stdout.String(), "braid client --server") || stderr.Len() != 0 {
			t.Errorf("run %q = %d, stdout %q, stderr %q", args, code, stdout.String(), stderr.String())
		}
	}
	for _, cmd := range []string{"keygen", "server", "client", "demo"} {
		var stdout, stderr bytes.Buffer
		if code := run([]string{cmd, "-h"}, &stdout, &stderr, nil); code != 0 ||
			!strings.Contains(stdout.String(), "Usage: braid "+cmd) || !strings.Contains(stdout.String(), "  --") {
			t.Errorf("%s -h = %d, stdout %q, stderr %q", cmd, code, stdout.String(), stderr.String())
		}
	}
}

func TestClientFlagsOverrideConfig(t *testing.T) {
	file := writeFile(t, "client.toml", `
server = "10.0.0.1:4433"
pin = "`+testPin+`"
token = "from-file"
socks = "127.0.0.1:2000"
socks_user = "u"
socks_pass = "p"
log_level = "debug"
fec = "4,1"
grace = "7s"
packet_coding = "off"
measured_pacing = "off"

[[path]]
name = "fiber"
spec = "192.168.1.10,price=0.1,medium=ethernet"

[[path]]
name = "lte"
dev = "lo"
ip = "127.0.0.1"
server = "10.0.0.2:4433"
conns = 2
price = 3
medium = "cellular"
operator = "partner"
`)
	cfg, err := parseClient([]string{"--config", file}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	wantPaths := []client.PathConfig{
		{Name: "fiber", Bind: netx.Bind{IP: netip.MustParseAddr("192.168.1.10")}, PriceGB: 0.1, Medium: "ethernet"},
		{Name: "lte", Bind: netx.Bind{IP: netip.MustParseAddr("127.0.0.1"), Device: "lo"}, Server: "10.0.0.2:4433",
			Conns: 2, PriceGB: 3, Medium: "cellular", Operator: "partner"},
	}
	if cfg.Server != "10.0.0.1:4433" || cfg.Token != "from-file" || cfg.SOCKS != "127.0.0.1:2000" ||
		cfg.SOCKSUser != "u" || cfg.SOCKSPass != "p" || cfg.Transport.K != 4 || cfg.Transport.M != 1 ||
		cfg.Transport.Grace != 7*time.Second || !cfg.Transport.NoPacketCoding || !cfg.Transport.NoMeasuredPacing || !reflect.DeepEqual(cfg.Paths, wantPaths) {
		t.Errorf("from file: %+v", cfg)
	}

	cfg, err = parseClient([]string{"--config", file, "--token", "from-flag", "--socks", "127.0.0.1:3000",
		"--fec", "8,2", "--path", "only=any", "--grace", "1s", "--packet-coding", "on", "--measured-pacing", "on"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Token != "from-flag" || cfg.SOCKS != "127.0.0.1:3000" || cfg.Server != "10.0.0.1:4433" ||
		cfg.Transport.K != 8 || cfg.Transport.M != 2 || cfg.Transport.Grace != time.Second ||
		cfg.Transport.NoPacketCoding || cfg.Transport.NoMeasuredPacing || len(cfg.Paths) != 1 || cfg.Paths[0].Name != "only" {
		t.Errorf("flags over file: %+v", cfg)
	}
}

func TestServerFlagsOverrideConfig(t *testing.T) {
	cert, key, _ := keyFiles(t)
	tokens := writeFile(t, "tokens", "# users\n\n  alice  \nbob\n#carol\n")
	file := writeFile(t, "server.toml", `
listen = "127.0.0.1:4433"
cert = "`+cert+`"
key = "`+key+`"
tokens = ["t1", "t2"]
token_file = "`+tokens+`"
allow_private = true
log_level = "warn"
packet_coding = "off"
measured_pacing = "off"
`)
	cfg, err := parseServer([]string{"--config", file}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:4433" || !cfg.AllowPrivate || len(cfg.Cert.Certificate) == 0 || !cfg.Transport.NoPacketCoding ||
		!cfg.Transport.NoMeasuredPacing || !reflect.DeepEqual(cfg.Tokens, []string{"t1", "t2", "alice", "bob"}) {
		t.Errorf("from file: listen %q private %v tokens %q", cfg.Listen, cfg.AllowPrivate, cfg.Tokens)
	}

	cfg, err = parseServer([]string{"--config", file, "--listen", "127.0.0.1:5555", "--token", "t3",
		"--allow-private=false", "--packet-coding", "on", "--measured-pacing", "on"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:5555" || cfg.AllowPrivate || cfg.Transport.NoPacketCoding || cfg.Transport.NoMeasuredPacing ||
		!reflect.DeepEqual(cfg.Tokens, []string{"t3", "alice", "bob"}) {
		t.Errorf("flags over file: listen %q private %v tokens %q", cfg.Listen, cfg.AllowPrivate, cfg.Tokens)
	}
}

func TestKeygen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"keygen", "--dir", dir, "--host", "127.0.0.1", "--host", "braid.example"}, &stdout, &stderr, nil); code != 0 {
		t.Fatalf("keygen = %d, stderr %q", code, stderr.String())
	}
	out := stdout.String()
	if !strings.HasPrefix(out, "sha256:") || strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
		t.Fatalf("stdout = %q, want one sha256: line", out)
	}
	_, pin, err := pki.LoadServerCert(filepath.Join(dir, pki.CertFileName), filepath.Join(dir, pki.KeyFileName))
	if err != nil {
		t.Fatal(err)
	}
	if pin != strings.TrimSpace(out) {
		t.Errorf("printed pin %q, files have %q", out, pin)
	}

	// A second run must not replace the key clients are pinned to.
	stdout.Reset()
	stderr.Reset()
	if code := run([]string{"keygen", "--dir", dir}, &stdout, &stderr, nil); code != 1 ||
		stdout.Len() != 0 || !strings.Contains(stderr.String(), "use --force") || strings.Count(stderr.String(), "\n") != 1 {
		t.Errorf("second keygen = %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
	stdout.Reset()
	if code := run([]string{"keygen", "--dir", dir, "--force"}, &stdout, &stderr, nil); code != 0 || stdout.String() == out {
		t.Errorf("keygen --force = %d, stdout %q", code, stdout.String())
	}
}
