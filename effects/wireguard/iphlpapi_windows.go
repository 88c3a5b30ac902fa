package wireguard

import (
	"errors"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/windows"
)

// The subset of the IP Helper API (iphlpapi.dll, netioapi.h) the Windows
// kernel needs: unicast addresses, routes and the per-family IP interface
// (its MTU). golang.zx2c4.com/wireguard/windows/tunnel/winipcfg has all
// of this, but its module does not resolve here (a dependency is not
// served), so the few calls are written out. The row types are our own,
// laid out as the Windows SDK lays them out on 64-bit Windows; the tests
// (iphlpapi_windows_test.go) check every size and offset against the
// numbers a C program compiled with the SDK's headers (mingw-w64) printed,
// and read real tables through them. x/sys/windows has Get* wrappers, but
// its MibIpInterfaceRow is 176 bytes (the two NL_INTERFACE_OFFLOAD_ROD
// bit-field bytes as uint32s) where the header's is 168.

var (
	modiphlpapi = windows.NewLazySystemDLL("iphlpapi.dll")

	procInitializeUnicastIpAddressEntry = modiphlpapi.NewProc("InitializeUnicastIpAddressEntry")
	procCreateUnicastIpAddressEntry     = modiphlpapi.NewProc("CreateUnicastIpAddressEntry")
	procGetUnicastIpAddressEntry        = modiphlpapi.NewProc("GetUnicastIpAddressEntry")
	procSetUnicastIpAddressEntry        = modiphlpapi.NewProc("SetUnicastIpAddressEntry")
	procDeleteUnicastIpAddressEntry     = modiphlpapi.NewProc("DeleteUnicastIpAddressEntry")
	procGetUnicastIpAddressTable        = modiphlpapi.NewProc("GetUnicastIpAddressTable")
	procInitializeIpForwardEntry        = modiphlpapi.NewProc("InitializeIpForwardEntry")
	procCreateIpForwardEntry2           = modiphlpapi.NewProc("CreateIpForwardEntry2")
	procDeleteIpForwardEntry2           = modiphlpapi.NewProc("DeleteIpForwardEntry2")
	procGetIpForwardTable2              = modiphlpapi.NewProc("GetIpForwardTable2")
	procInitializeIpInterfaceEntry      = modiphlpapi.NewProc("InitializeIpInterfaceEntry")
	procGetIpInterfaceEntry             = modiphlpapi.NewProc("GetIpInterfaceEntry")
	procSetIpInterfaceEntry             = modiphlpapi.NewProc("SetIpInterfaceEntry")
	procFreeMibTable                    = modiphlpapi.NewProc("FreeMibTable")
)

const (
	afUnspec = 0
	afInet   = windows.AF_INET
	afInet6  = windows.AF_INET6

	ipDadStatePreferred = 4          // NL_DAD_STATE IpDadStatePreferred
	infiniteLifetime    = 0xffffffff // ValidLifetime/PreferredLifetime: forever

	mibIPProtoNetMgmt = 3 // MIB_IPPROTO_NETMGMT: a static route made through this API
)

// sockaddrInet is SOCKADDR_INET (ws2ipdef.h): 28 bytes, 4-aligned.
// IPv4: sin_addr at 4. IPv6: sin6_flowinfo at 4, sin6_addr at 8,
// sin6_scope_id at 24.
type sockaddrInet struct {
	Family uint16
	Port   uint16 // network order; 0 here
	Data   [6]uint32
}

func (s *sockaddrInet) bytes() *[28]byte { return (*[28]byte)(unsafe.Pointer(s)) }

// setAddr stores a (no zone: the overlay's addresses have none).
func (s *sockaddrInet) setAddr(a netip.Addr) {
	*s = sockaddrInet{}
	b := s.bytes()
	if a.Is4() {
		s.Family = afInet
		v := a.As4()
		copy(b[4:8], v[:])
		return
	}
	s.Family = afInet6
	v := a.As16()
	copy(b[8:24], v[:])
}

// addr reads the address; ok is false for a family other than IPv4 and
// IPv6.
func (s *sockaddrInet) addr() (netip.Addr, bool) {
	b := s.bytes()
	switch s.Family {
	case afInet:
		return netip.AddrFrom4([4]byte(b[4:8])), true
	case afInet6:
		return netip.AddrFrom16([16]byte(b[8:24])), true
	}
	return netip.Addr{}, false
}

// ipAddressPrefix is IP_ADDRESS_PREFIX: 32 bytes, 4-aligned.
type ipAddressPrefix struct {
	Prefix       sockaddrInet
	PrefixLength uint8
	_            [3]byte
}

// mibUnicastIPAddressRow is MIB_UNICASTIPADDRESS_ROW: 80 bytes.
type mibUnicastIPAddressRow struct {
	Address            sockaddrInet
	_                  [4]byte // NET_LUID is 8-aligned
	InterfaceLuid      uint64
	InterfaceIndex     uint32
	PrefixOrigin       uint32
	SuffixOrigin       uint32
	ValidLifetime      uint32
	PreferredLifetime  uint32
	OnLinkPrefixLength uint8
	SkipAsSource       uint8
	_                  [2]byte
	DadState           uint32
	ScopeID            uint32
	CreationTimeStamp  int64
}

// mibUnicastIPAddressTable is MIB_UNICASTIPADDRESS_TABLE: the rows start
// at 8.
type mibUnicastIPAddressTable struct {
	NumEntries uint32
	_          [4]byte
	Table      [1]mibUnicastIPAddressRow
}

func (t *mibUnicastIPAddressTable) rows() []mibUnicastIPAddressRow {
	return unsafe.Slice(&t.Table[0], t.NumEntries)
}

// mibIPForwardRow2 is MIB_IPFORWARD_ROW2: 104 bytes.
type mibIPForwardRow2 struct {
	InterfaceLuid        uint64
	InterfaceIndex       uint32
	DestinationPrefix    ipAddressPrefix
	NextHop              sockaddrInet
	SitePrefixLength     uint8
	_                    [3]byte
	ValidLifetime        uint32
	PreferredLifetime    uint32
	Metric               uint32
	Protocol             uint32
	Loopback             uint8
	AutoconfigureAddress uint8
	Publish              uint8
	Immortal             uint8
	Age                  uint32
	Origin               uint32
}

// mibIPForwardTable2 is MIB_IPFORWARD_TABLE2: the rows start at 8.
type mibIPForwardTable2 struct {
	NumEntries uint32
	_          [4]byte
	Table      [1]mibIPForwardRow2
}

func (t *mibIPForwardTable2) rows() []mibIPForwardRow2 {
	return unsafe.Slice(&t.Table[0], t.NumEntries)
}

// mibIPInterfaceRow is MIB_IPINTERFACE_ROW: 168 bytes.
type mibIPInterfaceRow struct {
	Family                               uint16
	_                                    [6]byte
	InterfaceLuid                        uint64
	InterfaceIndex                       uint32
	MaxReassemblySize                    uint32
	InterfaceIdentifier                  uint64
	MinRouterAdvertisementInterval       uint32
	MaxRouterAdvertisementInterval       uint32
	AdvertisingEnabled                   uint8
	ForwardingEnabled                    uint8
	WeakHostSend                         uint8
	WeakHostReceive                      uint8
	UseAutomaticMetric                   uint8
	UseNeighborUnreachabilityDetection   uint8
	ManagedAddressConfigurationSupported uint8
	OtherStatefulConfigurationSupported  uint8
	AdvertiseDefaultRoute                uint8
	_                                    [3]byte
	RouterDiscoveryBehavior              int32
	DadTransmits                         uint32
	BaseReachableTime                    uint32
	RetransmitTime                       uint32
	PathMtuDiscoveryTimeout              uint32
	LinkLocalAddressBehavior             int32
	LinkLocalAddressTimeout              uint32
	ZoneIndices                          [16]uint32 // ScopeLevelCount
	SitePrefixLength                     uint32
	Metric                               uint32
	NlMtu                                uint32
	Connected                            uint8
	SupportsWakeUpPatterns               uint8
	SupportsNeighborDiscovery            uint8
	SupportsRouterDiscovery              uint8
	ReachableTime                        uint32
	TransmitOffload                      uint8 // NL_INTERFACE_OFFLOAD_ROD: 8 one-bit BOOLEANs
	ReceiveOffload                       uint8
	DisableDefaultRoutes                 uint8
	_                                    [1]byte
}

// netioErr turns a NETIO_STATUS (a Win32 error code) into an error.
func netioErr(r uintptr) error {
	if r == 0 {
		return nil
	}
	return syscall.Errno(r)
}

// The two answers the kernel treats as "already so".
func isExists(err error) bool   { return errors.Is(err, windows.ERROR_OBJECT_ALREADY_EXISTS) }
func isNotFound(err error) bool { return errors.Is(err, windows.ERROR_NOT_FOUND) }

// callErr calls p, first making sure it exists: a missing export is an
// error, not the panic that LazyProc.Call would raise.
func callErr(p *windows.LazyProc, args ...uintptr) error {
	if err := p.Find(); err != nil {
		return err
	}
	r, _, _ := syscall.SyscallN(p.Addr(), args...)
	return netioErr(r)
}

func initUnicastIPAddressRow(row *mibUnicastIPAddressRow) error {
	if err := procInitializeUnicastIpAddressEntry.Find(); err != nil {
		return err
	}
	syscall.SyscallN(procInitializeUnicastIpAddressEntry.Addr(), uintptr(unsafe.Pointer(row)))
	return nil
}

func createUnicastIPAddressEntry(row *mibUnicastIPAddressRow) error {
	return callErr(procCreateUnicastIpAddressEntry, uintptr(unsafe.Pointer(row)))
}

func getUnicastIPAddressEntry(row *mibUnicastIPAddressRow) error {
	return callErr(procGetUnicastIpAddressEntry, uintptr(unsafe.Pointer(row)))
}

func setUnicastIPAddressEntry(row *mibUnicastIPAddressRow) error {
	return callErr(procSetUnicastIpAddressEntry, uintptr(unsafe.Pointer(row)))
}

func deleteUnicastIPAddressEntry(row *mibUnicastIPAddressRow) error {
	return callErr(procDeleteUnicastIpAddressEntry, uintptr(unsafe.Pointer(row)))
}

// unicastIPAddresses returns a copy of the unicast address table of family.
func unicastIPAddresses(family uint16) ([]mibUnicastIPAddressRow, error) {
	var t *mibUnicastIPAddressTable
	if err := callErr(procGetUnicastIpAddressTable, uintptr(family), uintptr(unsafe.Pointer(&t))); err != nil {
		return nil, err
	}
	defer freeMibTable(unsafe.Pointer(t))
	return append([]mibUnicastIPAddressRow(nil), t.rows()...), nil
}

func initIPForwardRow2(row *mibIPForwardRow2) error {
	if err := procInitializeIpForwardEntry.Find(); err != nil {
		return err
	}
	syscall.SyscallN(procInitializeIpForwardEntry.Addr(), uintptr(unsafe.Pointer(row)))
	return nil
}

func createIPForwardEntry2(row *mibIPForwardRow2) error {
	return callErr(procCreateIpForwardEntry2, uintptr(unsafe.Pointer(row)))
}

func deleteIPForwardEntry2(row *mibIPForwardRow2) error {
	return callErr(procDeleteIpForwardEntry2, uintptr(unsafe.Pointer(row)))
}

// ipForwardTable returns a copy of the route table of family.
func ipForwardTable(family uint16) ([]mibIPForwardRow2, error) {
	var t *mibIPForwardTable2
	if err := callErr(procGetIpForwardTable2, uintptr(family), uintptr(unsafe.Pointer(&t))); err != nil {
		return nil, err
	}
	defer freeMibTable(unsafe.Pointer(t))
	return append([]mibIPForwardRow2(nil), t.rows()...), nil
}

// ipInterface reads the IP interface of family on the interface index.
// An interface without that family (IPv6 turned off) is ERROR_NOT_FOUND.
// The row is initialized by InitializeIpInterfaceEntry where iphlpapi has
// it (every Windows since Vista; wine 8 does not), else left zero: Get
// fills every field either way, only Family and the index are input.
func ipInterface(family uint16, index uint32) (*mibIPInterfaceRow, error) {
	row := &mibIPInterfaceRow{}
	if procInitializeIpInterfaceEntry.Find() == nil {
		syscall.SyscallN(procInitializeIpInterfaceEntry.Addr(), uintptr(unsafe.Pointer(row)))
	}
	row.Family = family
	row.InterfaceIndex = index
	if err := callErr(procGetIpInterfaceEntry, uintptr(unsafe.Pointer(row))); err != nil {
		return nil, err
	}
	return row, nil
}

// setIPInterface writes row back. SetIpInterfaceEntry's documentation
// requires SitePrefixLength 0 for an IPv4 row, whatever Get answered
// (wireguard-windows clears it the same way).
func setIPInterface(row *mibIPInterfaceRow) error {
	if row.Family == afInet {
		row.SitePrefixLength = 0
	}
	return callErr(procSetIpInterfaceEntry, uintptr(unsafe.Pointer(row)))
}

func freeMibTable(p unsafe.Pointer) {
	if procFreeMibTable.Find() == nil {
		syscall.SyscallN(procFreeMibTable.Addr(), uintptr(p))
	}
}
