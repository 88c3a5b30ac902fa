package main

import (
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"

	"github.com/zlayer/overlayd/cmd/internal/replay"
	"github.com/zlayer/overlayd/journal"
)

func main() {
	slog.SetLogLoggerLevel(slog.LevelDebug)
	if len(os.Args) > 3 {
		journal.RawUpdateMeta(os.Args[1]+"/journal.db", "checkpoint", func(v []byte) []byte { v[len(v)-100] ^= 1; return v })
	}
	var n uint64
	fmt.Sscan(os.Args[2], &n)
	f, _ := os.Create("/tmp/cmp.prof")
	pprof.StartCPUProfile(f)
	defer pprof.StopCPUProfile()
	res, err := replay.CompactDir(os.Args[1], replay.CompactOptions{BeforeSeq: n})
	if err != nil {
		panic(err)
	}
	fmt.Printf("%+v\n", *res)
}
