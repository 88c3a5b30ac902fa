package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// The bbolt (v1.5.0) file layout, read here without bbolt so that a
// damaged file is examined with bounds checks instead of bbolt's unchecked
// pointer arithmetic (internal/common/page.go, meta.go, bucket.go). bbolt
// writes its structs in the host's byte order.
//
//	page header   id u64, flags u16, count u16, overflow u32   (16 bytes)
//	meta          magic u32, version u32, page size u32, flags u32,
//	              root bucket {root u64, sequence u64}, freelist u64,
//	              high-water mark u64, txid u64, checksum u64 (FNV-64a of
//	              the preceding 56 bytes)
//	branch elem   pos u32, ksize u32, child pgid u64; key at elem+pos
//	leaf elem     flags u32, pos u32, ksize u32, vsize u32; key at
//	              elem+pos, value after the key
//	bucket value  root u64, sequence u64, then (root 0) an inline leaf page
//	freelist      count u16 ids (u64), or count 0xFFFF and the count in
//	              the first u64
const (
	pageHeaderSize   = 16
	elemSize         = 16 // branch and leaf elements alike
	bucketHeaderSize = 16

	pageBranch   = 0x01
	pageLeaf     = 0x02
	pageMeta     = 0x04
	pageFreelist = 0x10

	leafBucket = 0x01

	boltMagic   = 0xED0CDAED
	boltVersion = 2
	noFreelist  = ^uint64(0)

	maxTreeDepth = 64
	maxProblems  = 50
)

var ne = binary.NativeEndian

type pageHeader struct {
	id       uint64
	flags    uint16
	count    uint16
	overflow uint32
}

func readPageHeader(b []byte) pageHeader {
	return pageHeader{id: ne.Uint64(b), flags: ne.Uint16(b[8:]), count: ne.Uint16(b[10:]), overflow: ne.Uint32(b[12:])}
}

func (h pageHeader) kind() string {
	switch h.flags {
	case pageBranch:
		return "branch"
	case pageLeaf:
		return "leaf"
	case pageMeta:
		return "meta"
	case pageFreelist:
		return "freelist"
	}
	return fmt.Sprintf("unknown<%02x>", h.flags)
}

type boltMeta struct {
	page     int // 0 or 1
	pageSize uint32
	root     uint64
	freelist uint64
	hwm      uint64 // high-water mark: pages [0, hwm) are in use
	txid     uint64
	err      error // why it fails validation (nil: valid)
}

// parseMeta reads the meta in b, a page starting with its header.
func parseMeta(b []byte, page int) boltMeta {
	m := boltMeta{page: page}
	if len(b) < pageHeaderSize+64 {
		m.err = errors.New("short read")
		return m
	}
	mb := b[pageHeaderSize:]
	magic, version := ne.Uint32(mb), ne.Uint32(mb[4:])
	m.pageSize = ne.Uint32(mb[8:])
	m.root = ne.Uint64(mb[16:])
	m.freelist = ne.Uint64(mb[32:])
	m.hwm = ne.Uint64(mb[40:])
	m.txid = ne.Uint64(mb[48:])
	h := fnv.New64a()
	h.Write(mb[:56])
	switch {
	case magic != boltMagic:
		m.err = fmt.Errorf("magic %#x is not bbolt's", magic)
	case version != boltVersion:
		m.err = fmt.Errorf("version %d, want %d", version, boltVersion)
	case ne.Uint64(mb[56:]) != h.Sum64():
		m.err = errors.New("checksum mismatch")
	}
	return m
}

// layout is what the two meta pages say about a file.
type layout struct {
	size     int64
	pageSize int
	meta     boltMeta // the meta bbolt uses: the valid one with the higher txid
	metas    [2]boltMeta
	warnings []string
}

// readLayout finds the page size and the meta bbolt will use, as bbolt's
// Open does.
func readLayout(f io.ReaderAt, size int64) (*layout, error) {
	l := &layout{size: size}
	buf := make([]byte, 0x1000)
	if n, _ := f.ReadAt(buf, 0); n == len(buf) {
		if m := parseMeta(buf, 0); m.err == nil {
			l.pageSize = int(m.pageSize)
		}
	}
	if l.pageSize == 0 {
		for i := 0; i <= 14; i++ {
			pos := int64(1024) << i
			if pos >= size-1024 {
				break
			}
			n, _ := f.ReadAt(buf, pos)
			if m := parseMeta(buf[:n], 1); m.err == nil {
				l.pageSize = int(m.pageSize)
				break
			}
		}
	}
	if l.pageSize < 512 || l.pageSize&(l.pageSize-1) != 0 {
		return l, fmt.Errorf("neither meta page (0, 1) is a valid bbolt meta page: not a journal, or both meta pages damaged")
	}
	if size < 2*int64(l.pageSize) {
		return l, fmt.Errorf("the file is %d bytes, shorter than its two %d-byte meta pages", size, l.pageSize)
	}
	for i := range l.metas {
		b := make([]byte, pageHeaderSize+64)
		if _, err := f.ReadAt(b, int64(i*l.pageSize)); err != nil {
			l.metas[i] = boltMeta{page: i, err: err}
			continue
		}
		l.metas[i] = parseMeta(b, i)
	}
	a, b := l.metas[0], l.metas[1]
	if b.txid > a.txid {
		a, b = b, a
	}
	switch {
	case a.err == nil:
		l.meta = a
	case b.err == nil:
		l.meta = b
		l.warnings = append(l.warnings, fmt.Sprintf("page %d: meta page of the newer transaction fails its checks (%v): the file is read as of transaction %d, and the last commit may be missing",
			a.page, a.err, b.txid))
	default:
		return l, fmt.Errorf("page 0: %v; page 1: %v: both meta pages are invalid", l.metas[0].err, l.metas[1].err)
	}
	if int(l.meta.pageSize) != l.pageSize {
		return l, fmt.Errorf("page %d: meta page says page size %d, the file uses %d", l.meta.page, l.meta.pageSize, l.pageSize)
	}
	return l, nil
}

// pageReader reads pages of a file with bounds checks.
type pageReader struct {
	f   io.ReaderAt
	l   *layout
	buf []byte
}

// read returns page id with its overflow pages. The slice is valid until
// the next read.
func (r *pageReader) read(id uint64) ([]byte, pageHeader, error) {
	ps := uint64(r.l.pageSize)
	if id >= r.l.meta.hwm {
		return nil, pageHeader{}, fmt.Errorf("page %d: beyond the high-water mark %d", id, r.l.meta.hwm)
	}
	if (id+1)*ps > uint64(r.l.size) {
		return nil, pageHeader{}, fmt.Errorf("page %d: beyond the end of the file (%d bytes): truncated", id, r.l.size)
	}
	if cap(r.buf) < int(ps) {
		r.buf = make([]byte, ps)
	}
	buf := r.buf[:ps]
	if _, err := r.f.ReadAt(buf, int64(id*ps)); err != nil {
		return nil, pageHeader{}, fmt.Errorf("page %d: %w", id, err)
	}
	h := readPageHeader(buf)
	if h.overflow == 0 {
		return buf, h, nil
	}
	span := (uint64(h.overflow) + 1) * ps
	if id+uint64(h.overflow) >= r.l.meta.hwm || id*ps+span > uint64(r.l.size) {
		return nil, h, fmt.Errorf("page %d: its %d overflow pages reach beyond the file", id, h.overflow)
	}
	if cap(r.buf) < int(span) {
		nb := make([]byte, span)
		copy(nb, buf)
		r.buf = nb
	}
	buf = r.buf[:span]
	if _, err := r.f.ReadAt(buf[ps:], int64(id*ps+ps)); err != nil {
		return nil, h, fmt.Errorf("page %d: %w", id, err)
	}
	return buf, h, nil
}

// leafElem is one element of a leaf page, bounds-checked.
type leafElem struct {
	flags uint32
	key   []byte
	value []byte
}

// leafElems returns the elements of the leaf page in b (header first), or
// an error naming the first element whose key or value lies outside b.
func leafElems(b []byte, h pageHeader) ([]leafElem, error) {
	n := int(h.count)
	if pageHeaderSize+n*elemSize > len(b) {
		return nil, fmt.Errorf("%d elements do not fit in %d bytes", n, len(b))
	}
	out := make([]leafElem, 0, n)
	for i := 0; i < n; i++ {
		off := pageHeaderSize + i*elemSize
		flags, pos := ne.Uint32(b[off:]), uint64(ne.Uint32(b[off+4:]))
		ks, vs := uint64(ne.Uint32(b[off+8:])), uint64(ne.Uint32(b[off+12:]))
		start := uint64(off) + pos
		if start+ks+vs > uint64(len(b)) {
			return out, fmt.Errorf("element %d: key and value (%d+%d bytes at %d) lie outside the page", i, ks, vs, start)
		}
		out = append(out, leafElem{flags: flags, key: b[start : start+ks], value: b[start+ks : start+ks+vs]})
	}
	return out, nil
}

// checkLeaf is leafElems without the elements: it reports whether the
// page holds bucket elements.
func checkLeaf(b []byte, h pageHeader) (buckets bool, err error) {
	n := int(h.count)
	if pageHeaderSize+n*elemSize > len(b) {
		return false, fmt.Errorf("%d elements do not fit in %d bytes", n, len(b))
	}
	for i := 0; i < n; i++ {
		off := pageHeaderSize + i*elemSize
		flags, pos := ne.Uint32(b[off:]), uint64(ne.Uint32(b[off+4:]))
		ks, vs := uint64(ne.Uint32(b[off+8:])), uint64(ne.Uint32(b[off+12:]))
		if uint64(off)+pos+ks+vs > uint64(len(b)) {
			return buckets, fmt.Errorf("element %d: key and value (%d+%d bytes at %d) lie outside the page", i, ks, vs, uint64(off)+pos)
		}
		buckets = buckets || flags&leafBucket != 0
	}
	return buckets, nil
}

type branchElem struct {
	key   []byte
	child uint64
}

func branchElems(b []byte, h pageHeader) ([]branchElem, error) {
	n := int(h.count)
	if n == 0 {
		return nil, errors.New("branch page without elements")
	}
	if pageHeaderSize+n*elemSize > len(b) {
		return nil, fmt.Errorf("%d elements do not fit in %d bytes", n, len(b))
	}
	out := make([]branchElem, 0, n)
	for i := 0; i < n; i++ {
		off := pageHeaderSize + i*elemSize
		pos, ks := uint64(ne.Uint32(b[off:])), uint64(ne.Uint32(b[off+4:]))
		start := uint64(off) + pos
		if start+ks > uint64(len(b)) {
			return out, fmt.Errorf("element %d: key (%d bytes at %d) lies outside the page", i, ks, start)
		}
		out = append(out, branchElem{key: b[start : start+ks], child: ne.Uint64(b[off+8:])})
	}
	return out, nil
}

// walker checks the tree structure of a file: every page bbolt reaches
// from the meta lies inside the file, says it is the page it is read as,
// has a valid type, keeps its elements inside itself, and no branch leads
// back to a branch already on the walk (bbolt would recurse forever).
//
// The quick walk (at Open) reads the root bucket's pages and the branch
// pages of the other buckets; the full walk (Check) reads every reachable
// page.
type walker struct {
	r        *pageReader
	full     bool
	problems []string
	branches map[uint64]bool
	seen     map[uint64]uint64 // page -> the branch that referenced it (full walk)
	bottom   []uint64          // children of the lowest branches, not read (quick walk)
}

func (w *walker) problem(format string, a ...any) {
	if len(w.problems) < maxProblems {
		w.problems = append(w.problems, fmt.Sprintf(format, a...))
	} else if len(w.problems) == maxProblems {
		w.problems = append(w.problems, "… more problems not listed")
	}
}

// checkFile walks the file's structure and returns the problems found.
func checkFile(f io.ReaderAt, size int64, full bool) (*layout, []string) {
	l, err := readLayout(f, size)
	if err != nil {
		return l, []string{err.Error()}
	}
	w := &walker{r: &pageReader{f: f, l: l}, full: full, branches: map[uint64]bool{}, seen: map[uint64]uint64{}}
	m := l.meta
	if need := m.hwm * uint64(l.pageSize); need > uint64(size) {
		w.problem("the file is %d bytes but its pages reach byte %d (high-water mark page %d, meta page %d): truncated",
			size, need, m.hwm, m.page)
		return l, w.problems
	}
	w.freelist(m.freelist, m.hwm)
	if m.root < 2 || m.root >= m.hwm {
		w.problem("meta page %d: root bucket page %d is outside [2, %d)", m.page, m.root, m.hwm)
		return l, w.problems
	}
	w.tree("root bucket", m.root, true, 0, nil)
	for _, c := range w.bottom {
		if w.branches[c] {
			w.problem("page %d: referenced as a leaf but is a branch page on the walk (a loop in the tree)", c)
		}
	}
	return l, w.problems
}

func (w *walker) freelist(id, hwm uint64) {
	if id == noFreelist {
		return
	}
	if id < 2 || id >= hwm {
		w.problem("freelist page %d is outside [2, %d)", id, hwm)
		return
	}
	b, h, err := w.r.read(id)
	if err != nil {
		w.problem("freelist %v", err)
		return
	}
	if h.id != id {
		w.problem("page %d: freelist page identifies as page %d", id, h.id)
		return
	}
	if h.flags != pageFreelist {
		w.problem("page %d: freelist page has type %s", id, h.kind())
		return
	}
	idx, count := 0, uint64(h.count)
	if h.count == 0xFFFF {
		if len(b) < pageHeaderSize+8 {
			w.problem("page %d: freelist count missing", id)
			return
		}
		idx, count = 1, ne.Uint64(b[pageHeaderSize:])
	}
	if uint64(pageHeaderSize)+(uint64(idx)+count)*8 > uint64(len(b)) {
		w.problem("page %d: freelist of %d ids does not fit in its %d bytes", id, count, len(b))
		return
	}
	for i := uint64(0); i < count; i++ {
		if p := ne.Uint64(b[pageHeaderSize+(uint64(idx)+i)*8:]); p < 2 || p >= hwm {
			w.problem("page %d: freelist holds page %d, outside [2, %d)", id, p, hwm)
			return
		}
	}
}

// tree walks the bucket tree rooted at id. readLeaves: read the leaf
// pages too (the root bucket always, everything on a full walk).
func (w *walker) tree(bucket string, id uint64, readLeaves bool, depth int, path []uint64) {
	if depth > maxTreeDepth {
		w.problem("page %d: %s tree deeper than %d levels (a loop?)", id, bucket, maxTreeDepth)
		return
	}
	if id < 2 || id >= w.r.l.meta.hwm {
		if len(path) > 0 {
			w.problem("page %d: refers to page %d of %s, outside [2, %d) (path %v)", path[len(path)-1], id, bucket, w.r.l.meta.hwm, path)
		} else {
			w.problem("meta page %d: %s root page %d is outside [2, %d)", w.r.l.meta.page, bucket, id, w.r.l.meta.hwm)
		}
		return
	}
	if w.full {
		if by, dup := w.seen[id]; dup {
			w.problem("page %d: referenced twice (by pages %d and %v)", id, by, path)
			return
		}
		parent := uint64(0)
		if len(path) > 0 {
			parent = path[len(path)-1]
		}
		w.seen[id] = parent
	}
	b, h, err := w.r.read(id)
	if err != nil {
		w.problem("%s %v", bucket, err)
		return
	}
	if h.id != id {
		w.problem("page %d: identifies as page %d (%s, referenced by page %v)", id, h.id, bucket, path)
		return
	}
	switch h.flags {
	case pageBranch:
		if w.branches[id] {
			w.problem("page %d: branch page reached twice (a loop in the %s tree)", id, bucket)
			return
		}
		w.branches[id] = true
		elems, err := branchElems(b, h)
		if err != nil {
			w.problem("page %d: %s branch page: %v", id, bucket, err)
			return
		}
		path = append(path, id)
		children := make([]uint64, len(elems))
		for i, e := range elems {
			children[i] = e.child
		}
		if !readLeaves && !w.full {
			// A B+tree is balanced: if the first child is a leaf, so are
			// the others; they are checked for range and loops only.
			c := children[0]
			if c >= 2 && c < w.r.l.meta.hwm {
				if _, ch, err := w.r.read(c); err == nil && ch.flags == pageLeaf {
					for _, c := range children {
						if c < 2 || c >= w.r.l.meta.hwm {
							w.problem("page %d: %s branch points to page %d, outside [2, %d)", id, bucket, c, w.r.l.meta.hwm)
							continue
						}
						w.bottom = append(w.bottom, c)
					}
					return
				}
			}
		}
		for _, c := range children {
			w.tree(bucket, c, readLeaves, depth+1, path)
		}
	case pageLeaf:
		if !readLeaves && !w.full {
			return
		}
		buckets, err := checkLeaf(b, h)
		if err != nil {
			w.problem("page %d: %s leaf page: %v", id, bucket, err)
		}
		if !buckets {
			return
		}
		// The walk below reuses the read buffer: keep this page.
		b = append([]byte(nil), b...)
		elems, _ := leafElems(b, h)
		for _, e := range elems {
			if e.flags&leafBucket != 0 {
				w.bucket(string(e.key), e.value, id, depth, path)
			}
		}
	default:
		w.problem("page %d: %s page has type %s (referenced by page %v)", id, bucket, h.kind(), path)
	}
}

// bucket checks a nested bucket whose header is v, found on page onPage.
func (w *walker) bucket(name string, v []byte, onPage uint64, depth int, path []uint64) {
	if len(v) < bucketHeaderSize {
		w.problem("page %d: bucket %q: header of %d bytes", onPage, name, len(v))
		return
	}
	root := ne.Uint64(v)
	if root != 0 {
		w.tree(fmt.Sprintf("bucket %q", name), root, w.full, depth+1, append(path, onPage))
		return
	}
	inline := v[bucketHeaderSize:]
	if len(inline) < pageHeaderSize {
		w.problem("page %d: inline bucket %q: %d bytes", onPage, name, len(inline))
		return
	}
	h := readPageHeader(inline)
	if h.flags != pageLeaf {
		w.problem("page %d: inline bucket %q has page type %s", onPage, name, h.kind())
		return
	}
	elems, err := leafElems(inline, h)
	if err != nil {
		w.problem("page %d: inline bucket %q: %v", onPage, name, err)
	}
	for _, e := range elems {
		if e.flags&leafBucket != 0 {
			w.bucket(string(e.key), e.value, onPage, depth+1, path)
		}
	}
}

// checkPath runs checkFile on the file at path.
func checkPath(path string, full bool) (*layout, []string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	l, problems := checkFile(f, fi.Size(), full)
	return l, problems, nil
}
