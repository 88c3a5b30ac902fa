package wireguard

import (
	"net"
	"net/netip"
	"testing"
	"unsafe"

	"golang.org/x/sys/windows"
)

// The expected numbers are what a C program compiled with mingw-w64's
// netioapi.h / ws2ipdef.h (x86_64) printed with sizeof and offsetof, run
// under wine (docs/windows-wintun.md has the program). They match the
// Windows SDK's headers for 64-bit Windows.

type layout struct {
	name      string
	got, want uintptr
}

func checkLayout(t *testing.T, ls []layout) {
	t.Helper()
	for _, l := range ls {
		if l.got != l.want {
			t.Errorf("%s = %d, want %d", l.name, l.got, l.want)
		}
	}
}

func TestLayoutSockaddrInet(t *testing.T) {
	var s sockaddrInet
	var p ipAddressPrefix
	checkLayout(t, []layout{
		{"sizeof(SOCKADDR_INET)", unsafe.Sizeof(s), 28},
		{"alignof(SOCKADDR_INET)", unsafe.Alignof(s), 4},
		{"sizeof(IP_ADDRESS_PREFIX)", unsafe.Sizeof(p), 32},
		{"IP_ADDRESS_PREFIX.PrefixLength", unsafe.Offsetof(p.PrefixLength), 28},
	})
	for _, a := range []string{"10.200.7.1", "fd00:200::7", "0.0.0.0", "::", "255.255.255.255"} {
		want := netip.MustParseAddr(a)
		s.setAddr(want)
		got, ok := s.addr()
		if !ok || got != want {
			t.Errorf("%s: round trip gave %v, %v", a, got, ok)
		}
		b := s.bytes()
		if want.Is4() {
			if v := want.As4(); [4]byte(b[4:8]) != v || s.Family != afInet {
				t.Errorf("%s: sin_addr not at offset 4: % x", a, b[:])
			}
		} else if v := want.As16(); [16]byte(b[8:24]) != v || s.Family != afInet6 {
			t.Errorf("%s: sin6_addr not at offset 8: % x", a, b[:])
		}
	}
}

func TestLayoutUnicastIPAddressRow(t *testing.T) {
	var r mibUnicastIPAddressRow
	var tb mibUnicastIPAddressTable
	checkLayout(t, []layout{
		{"sizeof(MIB_UNICASTIPADDRESS_ROW)", unsafe.Sizeof(r), 80},
		{"alignof(MIB_UNICASTIPADDRESS_ROW)", unsafe.Alignof(r), 8},
		{"Address", unsafe.Offsetof(r.Address), 0},
		{"InterfaceLuid", unsafe.Offsetof(r.InterfaceLuid), 32},
		{"InterfaceIndex", unsafe.Offsetof(r.InterfaceIndex), 40},
		{"PrefixOrigin", unsafe.Offsetof(r.PrefixOrigin), 44},
		{"SuffixOrigin", unsafe.Offsetof(r.SuffixOrigin), 48},
		{"ValidLifetime", unsafe.Offsetof(r.ValidLifetime), 52},
		{"PreferredLifetime", unsafe.Offsetof(r.PreferredLifetime), 56},
		{"OnLinkPrefixLength", unsafe.Offsetof(r.OnLinkPrefixLength), 60},
		{"SkipAsSource", unsafe.Offsetof(r.SkipAsSource), 61},
		{"DadState", unsafe.Offsetof(r.DadState), 64},
		{"ScopeId", unsafe.Offsetof(r.ScopeID), 68},
		{"CreationTimeStamp", unsafe.Offsetof(r.CreationTimeStamp), 72},
		{"MIB_UNICASTIPADDRESS_TABLE.Table", unsafe.Offsetof(tb.Table), 8},
	})
}

func TestLayoutIPForwardRow2(t *testing.T) {
	var r mibIPForwardRow2
	var tb mibIPForwardTable2
	checkLayout(t, []layout{
		{"sizeof(MIB_IPFORWARD_ROW2)", unsafe.Sizeof(r), 104},
		{"alignof(MIB_IPFORWARD_ROW2)", unsafe.Alignof(r), 8},
		{"InterfaceLuid", unsafe.Offsetof(r.InterfaceLuid), 0},
		{"InterfaceIndex", unsafe.Offsetof(r.InterfaceIndex), 8},
		{"DestinationPrefix", unsafe.Offsetof(r.DestinationPrefix), 12},
		{"NextHop", unsafe.Offsetof(r.NextHop), 44},
		{"SitePrefixLength", unsafe.Offsetof(r.SitePrefixLength), 72},
		{"ValidLifetime", unsafe.Offsetof(r.ValidLifetime), 76},
		{"PreferredLifetime", unsafe.Offsetof(r.PreferredLifetime), 80},
		{"Metric", unsafe.Offsetof(r.Metric), 84},
		{"Protocol", unsafe.Offsetof(r.Protocol), 88},
		{"Loopback", unsafe.Offsetof(r.Loopback), 92},
		{"AutoconfigureAddress", unsafe.Offsetof(r.AutoconfigureAddress), 93},
		{"Publish", unsafe.Offsetof(r.Publish), 94},
		{"Immortal", unsafe.Offsetof(r.Immortal), 95},
		{"Age", unsafe.Offsetof(r.Age), 96},
		{"Origin", unsafe.Offsetof(r.Origin), 100},
		{"MIB_IPFORWARD_TABLE2.Table", unsafe.Offsetof(tb.Table), 8},
	})
}

func TestLayoutIPInterfaceRow(t *testing.T) {
	var r mibIPInterfaceRow
	checkLayout(t, []layout{
		{"sizeof(MIB_IPINTERFACE_ROW)", unsafe.Sizeof(r), 168},
		{"alignof(MIB_IPINTERFACE_ROW)", unsafe.Alignof(r), 8},
		{"Family", unsafe.Offsetof(r.Family), 0},
		{"InterfaceLuid", unsafe.Offsetof(r.InterfaceLuid), 8},
		{"InterfaceIndex", unsafe.Offsetof(r.InterfaceIndex), 16},
		{"MaxReassemblySize", unsafe.Offsetof(r.MaxReassemblySize), 20},
		{"InterfaceIdentifier", unsafe.Offsetof(r.InterfaceIdentifier), 24},
		{"AdvertisingEnabled", unsafe.Offsetof(r.AdvertisingEnabled), 40},
		{"RouterDiscoveryBehavior", unsafe.Offsetof(r.RouterDiscoveryBehavior), 52},
		{"LinkLocalAddressBehavior", unsafe.Offsetof(r.LinkLocalAddressBehavior), 72},
		{"ZoneIndices", unsafe.Offsetof(r.ZoneIndices), 80},
		{"SitePrefixLength", unsafe.Offsetof(r.SitePrefixLength), 144},
		{"Metric", unsafe.Offsetof(r.Metric), 148},
		{"NlMtu", unsafe.Offsetof(r.NlMtu), 152},
		{"Connected", unsafe.Offsetof(r.Connected), 156},
		{"ReachableTime", unsafe.Offsetof(r.ReachableTime), 160},
		{"TransmitOffload", unsafe.Offsetof(r.TransmitOffload), 164},
		{"ReceiveOffload", unsafe.Offsetof(r.ReceiveOffload), 165},
		{"DisableDefaultRoutes", unsafe.Offsetof(r.DisableDefaultRoutes), 166},
	})
}

// TestRowsInitialized checks that the Initialize* calls exist and fill
// what this package relies on (infinite lifetimes). Wine 8's iphlpapi
// lacks them (skipped there); every Windows since Vista has them.
func TestRowsInitialized(t *testing.T) {
	if err := procInitializeUnicastIpAddressEntry.Find(); err != nil {
		t.Skipf("this iphlpapi.dll (wine 8?) has no Initialize* calls: %v", err)
	}
	var a mibUnicastIPAddressRow
	if err := initUnicastIPAddressRow(&a); err != nil {
		t.Fatalf("InitializeUnicastIpAddressEntry: %v", err)
	}
	var r mibIPForwardRow2
	if err := initIPForwardRow2(&r); err != nil {
		t.Fatalf("InitializeIpForwardEntry: %v", err)
	}
	t.Logf("initialized: address lifetimes %#x/%#x, route lifetimes %#x/%#x metric %d protocol %d",
		a.ValidLifetime, a.PreferredLifetime, r.ValidLifetime, r.PreferredLifetime, r.Metric, r.Protocol)
	if a.ValidLifetime != infiniteLifetime || r.ValidLifetime != infiniteLifetime {
		t.Errorf("lifetimes not infinite after Initialize: address %#x, route %#x", a.ValidLifetime, r.ValidLifetime)
	}
}

// loopback is the host's loopback interface as Go's net package (the
// adapter addresses API) sees it.
func loopback(t *testing.T) net.Interface {
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagLoopback != 0 {
			return ifc
		}
	}
	t.Skip("no loopback interface listed")
	return net.Interface{}
}

// TestReadAddressTable reads the real unicast address table through our
// row type: 127.0.0.1/8 is on the loopback interface (the index Go's net
// package reports). A wrong row size or offset would misplace it.
func TestReadAddressTable(t *testing.T) {
	lo := loopback(t)
	rows, err := unicastIPAddresses(afUnspec)
	if err != nil {
		t.Fatalf("GetUnicastIpAddressTable: %v", err)
	}
	if len(rows) == 0 {
		t.Fatal("no addresses at all")
	}
	got, err := (&winKernel{}).Addrs(Link{Name: lo.Name, Index: lo.Index})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d addresses; on %s (index %d): %v", len(rows), lo.Name, lo.Index, got)
	for _, r := range rows {
		a, ok := r.Address.addr()
		if !ok {
			t.Errorf("row with family %d", r.Address.Family)
			continue
		}
		if int(r.OnLinkPrefixLength) > a.BitLen() {
			t.Errorf("%v with prefix length %d", a, r.OnLinkPrefixLength)
		}
	}
	want := netip.MustParsePrefix("127.0.0.1/8")
	found := false
	for _, p := range got {
		found = found || p == want
	}
	if !found {
		t.Errorf("%v is not on the loopback interface (index %d): %v", want, lo.Index, got)
	}
}

// TestReadRouteTable reads the real route table through our row type:
// every row has an IPv4 or IPv6 destination with a possible prefix length
// on an interface Go's net package knows.
func TestReadRouteTable(t *testing.T) {
	rows, err := ipForwardTable(afUnspec)
	if err != nil {
		t.Fatalf("GetIpForwardTable2: %v", err)
	}
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	known := map[uint32]bool{}
	for _, ifc := range ifs {
		known[uint32(ifc.Index)] = true
	}
	if len(rows) == 0 {
		t.Fatal("no routes at all")
	}
	for _, r := range rows {
		d, ok := r.DestinationPrefix.Prefix.addr()
		nh, ok2 := r.NextHop.addr()
		if !ok || !ok2 || int(r.DestinationPrefix.PrefixLength) > d.BitLen() || !known[r.InterfaceIndex] {
			t.Errorf("bad row: dest %v/%d (family %d) next hop %v index %d protocol %d",
				d, r.DestinationPrefix.PrefixLength, r.DestinationPrefix.Prefix.Family, nh, r.InterfaceIndex, r.Protocol)
		}
	}
	t.Logf("%d routes", len(rows))
}

// TestReadIPInterface reads the loopback's IPv4 interface: its index comes
// back, and its MTU is the one the adapter addresses API reports. Wine 8
// has no GetIpInterfaceEntry: there only the missing-link answer is
// checked.
func TestReadIPInterface(t *testing.T) {
	if _, err := (&winKernel{}).Link("zl-no-such-link"); !errorsIsNotFound(err) {
		t.Errorf("Link of a missing name: %v, want ErrLinkNotFound", err)
	}
	if err := procGetIpInterfaceEntry.Find(); err != nil {
		t.Skipf("this iphlpapi.dll (wine 8?) has no GetIpInterfaceEntry: %v", err)
	}
	lo := loopback(t)
	row, err := ipInterface(afInet, uint32(lo.Index))
	if err != nil {
		t.Fatalf("GetIpInterfaceEntry: %v", err)
	}
	t.Logf("%s: IPv4 NlMtu %d, metric %d, connected %d; net.Interface MTU %d", lo.Name, row.NlMtu, row.Metric, row.Connected, lo.MTU)
	if row.Family != afInet || row.InterfaceIndex != uint32(lo.Index) {
		t.Errorf("family %d index %d, want %d %d", row.Family, row.InterfaceIndex, afInet, lo.Index)
	}
	if row.NlMtu == 0 || int(row.NlMtu) != lo.MTU {
		t.Errorf("NlMtu %d, net.Interface MTU %d", row.NlMtu, lo.MTU)
	}
	l, err := (&winKernel{}).Link(lo.Name)
	if err != nil || l.Index != lo.Index {
		t.Errorf("Link(%q) = %+v, %v", lo.Name, l, err)
	}
}

// TestExports logs which of the calls the kernel uses this iphlpapi.dll
// has (wine 8 lacks several; Windows has all since Vista).
func TestExports(t *testing.T) {
	for _, p := range []*windows.LazyProc{procInitializeUnicastIpAddressEntry, procCreateUnicastIpAddressEntry,
		procGetUnicastIpAddressEntry, procSetUnicastIpAddressEntry, procDeleteUnicastIpAddressEntry,
		procGetUnicastIpAddressTable, procInitializeIpForwardEntry, procCreateIpForwardEntry2,
		procDeleteIpForwardEntry2, procGetIpForwardTable2, procInitializeIpInterfaceEntry,
		procGetIpInterfaceEntry, procSetIpInterfaceEntry, procFreeMibTable} {
		t.Logf("%-32s %v", p.Name, p.Find() == nil)
	}
	for _, p := range []*windows.LazyProc{procGetUnicastIpAddressTable, procGetIpForwardTable2, procFreeMibTable} {
		if err := p.Find(); err != nil {
			t.Errorf("%s: %v", p.Name, err)
		}
	}
}

// TestOurRoutesFilter: only static (NETMGMT) routes through the index
// count as the package's.
func TestOurRoutesFilter(t *testing.T) {
	mk := func(idx uint32, proto uint32, p string) mibIPForwardRow2 {
		var r mibIPForwardRow2
		pp := netip.MustParsePrefix(p)
		r.InterfaceIndex, r.Protocol = idx, proto
		r.DestinationPrefix.Prefix.setAddr(pp.Addr())
		r.DestinationPrefix.PrefixLength = uint8(pp.Bits())
		return r
	}
	rows := []mibIPForwardRow2{
		mk(7, mibIPProtoNetMgmt, "10.201.0.0/16"),
		mk(7, 2, "10.200.0.0/16"), // MIB_IPPROTO_LOCAL: derived from the address
		mk(8, mibIPProtoNetMgmt, "10.202.0.0/16"),
		mk(7, mibIPProtoNetMgmt, "fd00:201::/64"),
	}
	got := ourRoutes(rows, 7)
	if len(got) != 2 || got[0] != netip.MustParsePrefix("10.201.0.0/16") || got[1] != netip.MustParsePrefix("fd00:201::/64") {
		t.Fatalf("ourRoutes = %v", got)
	}
	r := &mibIPForwardRow2{}
	fillRouteRow(r, Link{Index: 7}, netip.MustParsePrefix("10.201.3.4/16"))
	d, _ := r.DestinationPrefix.Prefix.addr()
	nh, _ := r.NextHop.addr()
	if d != netip.MustParseAddr("10.201.0.0") || r.DestinationPrefix.PrefixLength != 16 || nh != netip.IPv4Unspecified() || r.Protocol != mibIPProtoNetMgmt || r.InterfaceIndex != 7 {
		t.Fatalf("routeRow: dest %v/%d next hop %v protocol %d index %d", d, r.DestinationPrefix.PrefixLength, nh, r.Protocol, r.InterfaceIndex)
	}
}

func TestFillAddrRow(t *testing.T) {
	r := &mibUnicastIPAddressRow{}
	fillAddrRow(r, Link{Index: 9}, netip.MustParsePrefix("10.200.7.1/16"))
	a, _ := r.Address.addr()
	if a != netip.MustParseAddr("10.200.7.1") || r.OnLinkPrefixLength != 16 || r.InterfaceIndex != 9 || r.DadState != ipDadStatePreferred || r.ValidLifetime != infiniteLifetime {
		t.Fatalf("fillAddrRow: %v/%d index %d dad %d lifetime %#x", a, r.OnLinkPrefixLength, r.InterfaceIndex, r.DadState, r.ValidLifetime)
	}
}
