package daemon

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/zlayer/overlayd/effects"
	"github.com/zlayer/overlayd/journal"
)

// homeOf hashes a machine id and a namespace inode into effects.Owner.Home.
func homeOf(machineID string, netnsInode uint64) string {
	sum := sha256.Sum256([]byte(strings.TrimSpace(machineID) + "/" + strconv.FormatUint(netnsInode, 10)))
	return hex.EncodeToString(sum[:4])
}

// ownerOf is the owner the effects mark kernel objects with.
func ownerOf(id journal.Identity) effects.Owner {
	o := effects.Owner{Home: home(), Legacy: id.Legacy}
	if !id.ID.IsZero() {
		o.Journal = id.ID.Short()
	} else {
		o.Legacy = true // a store without ids: the marks of old
	}
	return o
}
