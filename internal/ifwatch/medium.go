package ifwatch

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Link types from linux/if_arp.h, as found in /sys/class/net/NAME/type.
const (
	arphrdEther = 1
	arphrdRawIP = 519    // ARPHRD_RAWIP: rmnet, ipa, mhi_net
	arphrdNone  = 0xfffe // ARPHRD_NONE: tun, WireGuard, raw-ip modems
)

// cellularPrefixes are interface names only modems use: wwan (the kernel
// WWAN framework, ModemManager), rmnet (Qualcomm), ccmni (MediaTek).
var cellularPrefixes = []string{"wwan", "rmnet", "ccmni"}

// modemDrivers drive nothing but cellular modems.
var modemDrivers = map[string]bool{
	"qmi_wwan":       true,
	"cdc_mbim":       true,
	"huawei_cdc_ncm": true,
	"sierra_net":     true,
	"GobiNet":        true,
	"mhi_net":        true,
	"mhi_wwan_mbim":  true,
	"ipa":            true,
	"hso":            true,
}

// tetheringDrivers carry a phone's cellular link when the interface is
// named usb*; under other names (enx...) they are as often USB Ethernet
// adapters, so they only count together with the name.
var tetheringDrivers = map[string]bool{
	"rndis_host": true,
	"cdc_ether":  true,
	"cdc_ncm":    true,
	"cdc_eem":    true,
	"ipheth":     true,
}

// guessMedium guesses an interface's medium from sysfs under sysfsRoot
// (see List for the rules). A missing or unreadable entry never fails:
// it only makes the guess less specific, down to "other".
func guessMedium(name string) string {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return MediumOther
	}
	dir := filepath.Join(sysfsRoot, "class", "net", name)
	if !exists(dir) {
		return MediumOther
	}
	devtype := ueventValue(filepath.Join(dir, "uevent"), "DEVTYPE")
	typ := readInt(filepath.Join(dir, "type"))
	driver := ""
	if target, err := os.Readlink(filepath.Join(dir, "device", "driver")); err == nil {
		driver = filepath.Base(target)
	}

	// Wi-Fi: cfg80211 devices have phy80211, wireless extensions add
	// wireless/, and the wlan device type says so too.
	if exists(filepath.Join(dir, "wireless")) || exists(filepath.Join(dir, "phy80211")) || devtype == "wlan" {
		return MediumWiFi
	}

	// Cellular.
	if devtype == "wwan" {
		return MediumCellular
	}
	for _, p := range cellularPrefixes {
		if strings.HasPrefix(name, p) {
			return MediumCellular
		}
	}
	if modemDrivers[driver] {
		return MediumCellular
	}
	if strings.HasPrefix(name, "usb") && tetheringDrivers[driver] {
		return MediumCellular
	}
	if typ == arphrdRawIP {
		return MediumCellular
	}
	if typ == arphrdNone && exists(filepath.Join(dir, "qmi", "raw_ip")) {
		return MediumCellular
	}

	// Ethernet: an Ethernet-type link backed by hardware. Virtual
	// Ethernet-type links (veth, bridge, bond, vlan, dummy, macvlan) have
	// no device entry.
	if typ == arphrdEther && exists(filepath.Join(dir, "device")) {
		return MediumEthernet
	}
	return MediumOther
}

func exists(path string) bool {
	_, err := os.Stat(path)
	if err == nil {
		return true
	}
	// A dangling symlink (a fake tree, or a device being removed) still
	// says the entry is there.
	_, err = os.Lstat(path)
	return err == nil
}

// readInt reads a sysfs file holding one integer; -1 when it cannot.
func readInt(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return -1
	}
	return n
}

// ueventValue returns KEY's value from a uevent file (KEY=value lines).
func ueventValue(path, key string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if ok && k == key {
			return v
		}
	}
	return ""
}
