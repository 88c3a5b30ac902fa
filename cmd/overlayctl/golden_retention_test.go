package main

import (
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/zlayer/overlayd/journal"
)

// Golden outputs of the commands that change or copy the journal
// (journal compact, backup, restore), of the read commands on a compacted
// journal, and of journal follow from an in-process daemon.

var goldenFormats = []string{"table", "json", "jsonl"}

var (
	// A duration: "12 ms" in a table, "took_ms": 12.3 in JSON.
	durationText = regexp.MustCompile(`\b[0-9]+(\.[0-9]+)? ms\b`)
	durationJSON = regexp.MustCompile(`("(?:took|held)_ms":\s*)[0-9.e+-]+`)
	// A UTC time stamp in a file name (journal.db.replaced-20261130T090000Z).
	fileTime = regexp.MustCompile(`\.replaced-[0-9]{8}T[0-9]{6}Z`)
)

// scrubAll makes an output comparable across runs, replacing only what a
// run cannot fix: the data dir by $DATA, other temporary dirs by <TMP>,
// measured durations by <DURATION> (and verify's speed), UTC times in file
// names by <TIME>. Every other byte is compared.
func scrubAll(out, dataDir string, tmps ...string) string {
	out = scrub(out, dataDir)
	for _, d := range tmps {
		out = strings.ReplaceAll(out, d, "<TMP>")
	}
	out = durationText.ReplaceAllString(out, "<DURATION>")
	out = durationJSON.ReplaceAllString(out, "${1}<DURATION>")
	out = fileTime.ReplaceAllString(out, ".replaced-<TIME>")
	return scrubTimes(out)
}

// compactedFixture is the fixture node compacted before event 11 (events
// 1..10 archived, the checkpoint at 10, the journal holding 11..17) with
// compact -o format; it returns the data dir and compact's output.
func compactedFixture(t *testing.T, format string) (data, out string) {
	t.Helper()
	data = t.TempDir()
	fixtureNode(t, data)
	path := filepath.Join(data, "overlayd", journal.FileName)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errs := ctl(t, data, "journal", "compact", "--before", "11", "-o", format)
	if code != 0 {
		t.Fatalf("journal compact --before 11 -o %s: exit %d: %s", format, code, errs)
	}
	return data, sizeBeforeScrub(t, out, format, fi.Size())
}

// sizeBeforeScrub checks that compact's output gives the journal's size
// before the compaction, then replaces it by <SIZE>: how far bbolt grew
// the file (64 or 128 KiB here) depends on how the background indexer
// batched its transactions. The size after (a file written afresh),
// the archive's size and everything else are compared.
func sizeBeforeScrub(t *testing.T, out, format string, before int64) string {
	t.Helper()
	was := fmt.Sprintf(`"bytes_before":%d,`, before)
	if format == "json" {
		was = fmt.Sprintf(`"bytes_before": %d,`, before)
	}
	now := strings.Replace(was, fmt.Sprint(before), "<SIZE>", 1)
	if format == "table" {
		was = fmt.Sprintf("journal:     %s -> ", mib(before))
		now = "journal:     <SIZE> -> "
	}
	if !strings.Contains(out, was) {
		t.Fatalf("compact -o %s: the output does not give the journal's size before, %d bytes (%q):\n%s", format, before, was, out)
	}
	return strings.Replace(out, was, now, 1)
}

// journal compact (offline), table, json and jsonl.
func TestGoldenCompact(t *testing.T) {
	for _, o := range goldenFormats {
		data, out := compactedFixture(t, o)
		golden(t, "journal_compact_before_11."+o, scrubAll(out, data))
	}
}

// The read commands on a compacted journal: verify from the checkpoint
// and with --archives from the first event, ls, show, history, stats,
// state at the head, at the checkpoint and after it; state --at before
// the checkpoint is refused naming the archive.
func TestGoldenCompacted(t *testing.T) {
	data, _ := compactedFixture(t, "table")
	adir := filepath.Join(data, "overlayd", journal.ArchiveDirName)
	for _, c := range []struct {
		name string
		args []string
	}{
		{"journal_verify", []string{"journal", "verify"}},
		{"journal_verify_archives", []string{"journal", "verify", "--archives", adir}},
		{"journal_ls", []string{"journal", "ls"}},
		{"journal_ls_type_ip_reserved", []string{"journal", "ls", "--type", "ip_reserved"}},
		{"journal_ls_since_5", []string{"journal", "ls", "--since", "5"}},
		{"journal_show_12", []string{"journal", "show", "12"}},
		{"journal_stats", []string{"journal", "stats"}},
		{"history_10.200.3.2", []string{"history", "10.200.3.2"}},
		{"history_web", []string{"history", "web"}},
		{"state", []string{"state"}},
		{"state_at_10", []string{"state", "--at", "10"}},
		{"state_at_12", []string{"state", "--at", "12"}},
		{"diff_10_head", []string{"diff", "10", "head"}},
	} {
		for _, o := range goldenFormats {
			code, out, errs := ctl(t, data, append(c.args, "-o", o)...)
			if code != 0 {
				t.Errorf("compacted: %v -o %s: exit %d: %s", c.args, o, code, errs)
				continue
			}
			golden(t, "compacted_"+c.name+"."+o, scrubAll(out, data))
		}
	}
	// Points the journal no longer holds: an error naming the archive
	// (stderr, exit 4), the same in every format.
	for _, c := range []struct {
		name string
		args []string
	}{
		{"state_at_5", []string{"state", "--at", "5"}},
		{"journal_show_3", []string{"journal", "show", "3"}},
		{"diff_5_head", []string{"diff", "5", "head"}},
	} {
		code, out, errs := ctl(t, data, c.args...)
		if code != exitFailure || out != "" {
			t.Errorf("compacted: %v: exit %d (want %d), stdout %q", c.args, code, exitFailure, out)
		}
		golden(t, "compacted_"+c.name+".stderr", scrubAll(errs, data))
	}
}

// backupScrub checks that backup's output gives the SHA-256 and the size
// of the file it wrote, then replaces the SHA-256 by <SHA256> and, with
// sizeToo, the size by <SIZE>: a bbolt file's bytes (free pages,
// transaction ids) and how far it grew depend on how the background
// indexer batched its transactions, so they differ between runs while its
// content does not (the journal, the head, the checkpoint are compared).
// The copy of a compacted journal (written afresh) keeps its size.
func backupScrub(t *testing.T, out, file string, sizeToo bool) string {
	t.Helper()
	sum, err := fileSum(file)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	h := hex.EncodeToString(sum[:])
	size := regexp.MustCompile(fmt.Sprintf(`("size":\s*|size: +)%d\b`, fi.Size()))
	if !strings.Contains(out, h) || !size.MatchString(out) {
		t.Fatalf("backup %s: the output does not give the file's SHA-256 %s and size %d:\n%s", file, h, fi.Size(), out)
	}
	if sizeToo {
		out = size.ReplaceAllString(out, "${1}<SIZE>")
	}
	return strings.ReplaceAll(out, h, "<SHA256>")
}

// backup FILE of a stopped node, then restore FILE onto it (the current
// journal kept aside, the snapshot kept since it belongs to the backup)
// and onto an empty data dir; backup of a compacted journal, and its
// restore onto the same node (its archive present) and onto an empty
// data dir (the archive missing, said so).
func TestGoldenBackupRestore(t *testing.T) {
	data := t.TempDir()
	fixtureNode(t, data)
	dest := t.TempDir()
	for _, o := range goldenFormats {
		file := filepath.Join(dest, "node-"+o+".db")
		code, out, errs := ctl(t, data, "backup", file, "-o", o)
		if code != 0 {
			t.Fatalf("backup -o %s: exit %d: %s", o, code, errs)
		}
		golden(t, "backup."+o, scrubAll(backupScrub(t, out, file, true), data, dest))
	}
	file := filepath.Join(dest, "node-table.db")
	for _, o := range goldenFormats {
		code, out, errs := ctl(t, data, "restore", file, "-o", o)
		if code != 0 {
			t.Fatalf("restore -o %s: exit %d: %s", o, code, errs)
		}
		golden(t, "restore."+o, scrubAll(out, data, dest))
	}
	for _, o := range goldenFormats {
		empty := t.TempDir()
		code, out, errs := ctl(t, empty, "restore", file, "-o", o)
		if code != 0 {
			t.Fatalf("restore into an empty data dir -o %s: exit %d: %s", o, code, errs)
		}
		golden(t, "restore_empty."+o, scrubAll(out, empty, dest))
		if code, out, errs := ctl(t, empty, "journal", "verify"); code != 0 {
			t.Fatalf("verify after restore into an empty data dir: exit %d: %s%s", code, out, errs)
		}
	}

	cdata, _ := compactedFixture(t, "table")
	for _, o := range goldenFormats {
		cfile := filepath.Join(dest, "compacted-"+o+".db")
		code, out, errs := ctl(t, cdata, "backup", cfile, "-o", o)
		if code != 0 {
			t.Fatalf("backup of a compacted journal -o %s: exit %d: %s", o, code, errs)
		}
		golden(t, "backup_compacted."+o, scrubAll(backupScrub(t, out, cfile, false), cdata, dest))
	}
	cfile := filepath.Join(dest, "compacted-table.db")
	for _, o := range goldenFormats {
		code, out, errs := ctl(t, cdata, "restore", cfile, "-o", o)
		if code != 0 {
			t.Fatalf("restore of a compacted backup -o %s: exit %d: %s", o, code, errs)
		}
		golden(t, "restore_compacted."+o, scrubAll(out, cdata, dest))
	}
	for _, o := range goldenFormats {
		empty := t.TempDir()
		code, out, errs := ctl(t, empty, "restore", cfile, "-o", o)
		if code != 0 {
			t.Fatalf("restore of a compacted backup into an empty data dir -o %s: exit %d: %s", o, code, errs)
		}
		golden(t, "restore_compacted_empty."+o, scrubAll(out, empty, dest))
	}
}

// journal follow from an in-process daemon serving the fixture journal:
// --after 0 --limit 15 prints the fixture's first 15 events (the daemon's
// own boot events come after 17); on a compacted journal --after 10
// --limit 5 prints 11..15 and --after 0 is refused naming the checkpoint.
func TestGoldenFollow(t *testing.T) {
	data := t.TempDir()
	fixtureNode(t, data)
	sock := filepath.Join(data, "d.sock")
	liveDaemon(t, data, sock)
	for _, o := range goldenFormats {
		code, out, errs := ctlSock(t, data, sock, "journal", "follow", "--after", "0", "--limit", "15", "-o", o)
		if code != 0 {
			t.Fatalf("follow -o %s: exit %d: %s", o, code, errs)
		}
		golden(t, "journal_follow_after_0_limit_15."+o, scrubAll(out, data))
	}

	cdata, _ := compactedFixture(t, "table")
	csock := filepath.Join(cdata, "d.sock")
	liveDaemon(t, cdata, csock)
	for _, o := range goldenFormats {
		code, out, errs := ctlSock(t, cdata, csock, "journal", "follow", "--after", "10", "--limit", "5", "-o", o)
		if code != 0 {
			t.Fatalf("compacted: follow --after 10 -o %s: exit %d: %s", o, code, errs)
		}
		golden(t, "compacted_journal_follow_after_10_limit_5."+o, scrubAll(out, cdata))
	}
	code, out, errs := ctlSock(t, cdata, csock, "journal", "follow", "--after", "0", "--limit", "5")
	if code != exitFailure {
		t.Errorf("compacted: follow --after 0: exit %d (want %d)\n%s%s", code, exitFailure, out, errs)
	}
	golden(t, "compacted_journal_follow_after_0.stderr", scrubAll(errs, cdata))
}
