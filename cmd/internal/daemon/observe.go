package daemon

import "github.com/zlayer/overlayd/ipc"

// answerHooks are called with every request the socket answered (the ipc
// server's Observe hook): the metrics and the decision log register here
// before Serve. They run on the connection's goroutines and must not block.
type answerHooks []func(ipc.Answered)

func (hs answerHooks) observe(a ipc.Answered) {
	for _, h := range hs {
		h(a)
	}
}

// onAnswer registers h; call it before Serve.
func (d *Daemon) onAnswer(h func(ipc.Answered)) { d.answers = append(d.answers, h) }
