package client

import (
	"errors"
	"testing"

	"braid/internal/netx"
)

func TestConfigErrors(t *testing.T) {
	good := func() Config {
		return Config{Server: "127.0.0.1:4433", Pin: [32]byte{1}, Token: "t",
			Paths: []PathConfig{{Name: "a"}, {Name: "b", Server: "127.0.0.1:5000", Medium: "cellular", Operator: "partner"}}}
	}
	cases := map[string]struct {
		mutate func(*Config)
		field  string
	}{
		"no token":        {func(c *Config) { c.Token = "" }, "token"},
		"no pin":          {func(c *Config) { c.Pin = [32]byte{} }, "pin"},
		"user alone":      {func(c *Config) { c.SOCKSUser = "u" }, "socks-user"},
		"bad socks":       {func(c *Config) { c.SOCKS = "nope" }, "socks"},
		"no server":       {func(c *Config) { c.Server = ""; c.Paths[1].Server = "" }, "server"},
		"dup path":        {func(c *Config) { c.Paths[1].Name = "a" }, "path a"},
		"bad medium":      {func(c *Config) { c.Paths[0].Medium = "tv" }, "path a"},
		"bad operator":    {func(c *Config) { c.Paths[0].Operator = "someone" }, "path a"},
		"too many conns":  {func(c *Config) { c.Paths[0].Conns = 17 }, "path a"},
		"negative price":  {func(c *Config) { c.Paths[0].PriceGB = -1 }, "path a"},
		"no such device":  {func(c *Config) { c.Paths[0].Bind = netx.Bind{Device: "braid-nope0"} }, "path a"},
		"bad path server": {func(c *Config) { c.Paths[1].Server = "nowhere" }, "path b"},
		"bad fec":         {func(c *Config) { c.Transport.K = 40 }, "transport"},
	}
	for name, tc := range cases {
		c := good()
		tc.mutate(&c)
		c.Fill()
		var ce *ConfigError
		if err := c.Validate(); !errors.As(err, &ce) || ce.Field != tc.field {
			t.Errorf("%s: got %v, want a ConfigError on %q", name, err, tc.field)
		}
	}
	c := good()
	c.Fill()
	if err := c.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	if c.SOCKS != "127.0.0.1:1080" || c.Paths[0].Conns != 0 || c.Paths[0].Medium != "other" {
		t.Fatalf("defaults not applied: %+v", c)
	}
}
