package ifwatch

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// fakeNet describes one /sys/class/net/NAME entry.
type fakeNet struct {
	typ      string // contents of type; "" for none
	uevent   string
	device   bool   // a device/ entry exists
	driver   string // device/driver points at .../drivers/DRIVER
	dirs     []string
	symlinks map[string]string // extra entries: name -> target
}

func makeSysfs(t *testing.T, ifs map[string]fakeNet) string {
	t.Helper()
	root := t.TempDir()
	for name, f := range ifs {
		dir := filepath.Join(root, "class", "net", name)
		must(t, os.MkdirAll(dir, 0o755))
		if f.typ != "" {
			must(t, os.WriteFile(filepath.Join(dir, "type"), []byte(f.typ+"\n"), 0o644))
		}
		must(t, os.WriteFile(filepath.Join(dir, "uevent"), []byte(f.uevent), 0o644))
		if f.device || f.driver != "" {
			must(t, os.MkdirAll(filepath.Join(dir, "device"), 0o755))
		}
		if f.driver != "" {
			symlink(t, "../../../../bus/usb/drivers/"+f.driver, filepath.Join(dir, "device", "driver"))
		}
		for _, d := range f.dirs {
			must(t, os.MkdirAll(filepath.Join(dir, d), 0o755))
		}
		for n, target := range f.symlinks {
			symlink(t, target, filepath.Join(dir, n))
		}
	}
	return root
}

// symlink makes a (possibly dangling) symbolic link, as sysfs has; where
// the system refuses (Windows without the privilege) the test skips.
func symlink(t *testing.T, target, name string) {
	t.Helper()
	if err := os.Symlink(target, name); err != nil {
		if runtime.GOOS == "windows" {
			t.Skipf("skipping: cannot make symlinks for the fake sysfs: %v", err)
		}
		t.Fatal(err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestGuessMedium(t *testing.T) {
	ifs := map[string]fakeNet{
		// Wi-Fi.
		"wlan0":  {typ: "1", device: true, dirs: []string{"wireless"}},
		"wlp2s0": {typ: "1", device: true, symlinks: map[string]string{"phy80211": "../../ieee80211/phy0"}},
		"mlan0":  {typ: "1", device: true, uevent: "DEVTYPE=wlan\nINTERFACE=mlan0\n"},
		// Cellular.
		"wwan0":        {typ: "65534", device: true, driver: "option"},
		"rmnet_data0":  {typ: "519"},
		"ccmni0":       {typ: "65534"},
		"usb0":         {typ: "1", driver: "rndis_host"},
		"enx0a":        {typ: "1", driver: "qmi_wwan"},
		"enx0b":        {typ: "1", driver: "cdc_ncm", uevent: "DEVTYPE=wwan\nINTERFACE=enx0b\n"},
		"mhi_hwip0":    {typ: "519", driver: "mhi_net"},
		"enx0c":        {typ: "65534", driver: "qmi_wwan_q", dirs: []string{"qmi/raw_ip"}},
		"usb1":         {typ: "1", driver: "ipheth"},
		"wwan_virtual": {typ: "65534"},
		// Ethernet.
		"eth0":   {typ: "1", driver: "virtio_net"},
		"enp3s0": {typ: "1", driver: "r8169"},
		"enx0d":  {typ: "1", driver: "cdc_ncm"}, // USB Ethernet dongle, no WWAN flag
		"usb2":   {typ: "1", driver: "ax88179"}, // usb* but not a tethering driver
		// Other.
		"veth0": {typ: "1"},
		"br0":   {typ: "1", uevent: "DEVTYPE=bridge\n", dirs: []string{"bridge"}},
		"tun0":  {typ: "65534"},
		"wg0":   {typ: "65534", uevent: "DEVTYPE=wireguard\n"},
		"d0":    {typ: "1"},
		"ib0":   {typ: "32", device: true},
	}
	want := map[string]string{
		"wlan0": MediumWiFi, "wlp2s0": MediumWiFi, "mlan0": MediumWiFi,
		"wwan0": MediumCellular, "rmnet_data0": MediumCellular, "ccmni0": MediumCellular,
		"usb0": MediumCellular, "enx0a": MediumCellular, "enx0b": MediumCellular,
		"mhi_hwip0": MediumCellular, "enx0c": MediumCellular, "usb1": MediumCellular,
		"wwan_virtual": MediumCellular,
		"eth0":         MediumEthernet, "enp3s0": MediumEthernet, "enx0d": MediumEthernet, "usb2": MediumEthernet,
		"veth0": MediumOther, "br0": MediumOther, "tun0": MediumOther, "wg0": MediumOther,
		"d0": MediumOther, "ib0": MediumOther,
		// Not in the tree, or not a plain name.
		"missing0": MediumOther, "": MediumOther, "..": MediumOther, "../net/eth0": MediumOther,
	}
	old := sysfsRoot
	t.Cleanup(func() { sysfsRoot = old })
	sysfsRoot = makeSysfs(t, ifs)
	for name, w := range want {
		if got := guessMedium(name); got != w {
			t.Errorf("guessMedium(%q) = %q, want %q", name, got, w)
		}
	}

	// Without sysfs at all every guess is "other".
	sysfsRoot = filepath.Join(t.TempDir(), "nonexistent")
	if got := guessMedium("wlan0"); got != MediumOther {
		t.Errorf("without sysfs: guessMedium(wlan0) = %q, want other", got)
	}
}
