// Command grpcload drives one unary gRPC method the way the server benchmark drives HTTP with
// wrk: -connections separate connections (each its own ClientConn, so its own TCP connection),
// one closed-loop caller on each (a call leaves when the previous answer is in), all sending
// the same request for -duration. The request is a file of already-serialized message bytes
// and a pass-through codec sends them as they are and keeps the reply's bytes, so no generated
// code is needed; the benchmark checks the answers itself, before and after a case's runs.
//
// It prints one JSON line with the fields wrk's Lua `done` prints for the HTTP rows:
//
//	{"requests":N,"duration_us":N,"p50_us":N,"p99_us":N,"errors":N,"bad_status":N}
//
// requests counts the calls answered with a status (OK or not) and the latency percentiles are
// theirs; bad_status counts the answers whose status was not OK; errors counts calls that got
// no answer within -timeout and connections that did not become ready within it (wrk's
// timeout and connect errors).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
)

// rawCodec sends a []byte request as it is and copies the reply's bytes into a *[]byte.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	if b, ok := v.([]byte); ok {
		return b, nil
	}
	return nil, fmt.Errorf("rawCodec: cannot send %T, only []byte", v)
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	p, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("rawCodec: cannot receive into %T, only *[]byte", v)
	}
	*p = append((*p)[:0], data...)
	return nil
}

// Name is the content-subtype sent (application/grpc+proto): the bytes are a protobuf message.
func (rawCodec) Name() string { return "proto" }

// result is the printed JSON line.
type result struct {
	Requests   int   `json:"requests"`
	DurationUS int64 `json:"duration_us"`
	P50US      int64 `json:"p50_us"`
	P99US      int64 `json:"p99_us"`
	Errors     int   `json:"errors"`
	BadStatus  int   `json:"bad_status"`
}

// tally is what one caller saw.
type tally struct {
	latenciesUS []int64 // one per answered call
	badStatus   int
	timeouts    int
	firstError  error
}

func main() {
	target := flag.String("target", "", "host:port of the server (plaintext)")
	method := flag.String("method", "", "full method name, /package.Service/Method")
	requestFile := flag.String("request", "", "file holding the serialized request message")
	connections := flag.Int("connections", 1, "separate connections, one closed-loop caller each")
	duration := flag.Duration("duration", 3*time.Second, "how long callers start new calls")
	timeout := flag.Duration("timeout", 5*time.Second, "per call, and for a connection to be ready")
	procs := flag.Int("procs", 1, "GOMAXPROCS (1: one core, like the benchmark's single wrk thread)")
	flag.Parse()
	if *target == "" || *method == "" || *requestFile == "" || *connections < 1 {
		flag.Usage()
		os.Exit(2)
	}
	runtime.GOMAXPROCS(*procs)
	request, err := os.ReadFile(*requestFile)
	if err != nil {
		fail(err)
	}

	conns := make([]*grpc.ClientConn, 0, *connections)
	notReady := 0
	for range *connections {
		conn, err := grpc.NewClient(
			"passthrough:///"+*target,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})),
		)
		if err != nil {
			fail(err)
		}
		defer conn.Close()
		if !ready(conn, *timeout) {
			notReady++
			continue
		}
		conns = append(conns, conn)
	}

	tallies := make([]tally, len(conns))
	var wg sync.WaitGroup
	start := time.Now()
	stop := start.Add(*duration)
	for i, conn := range conns {
		wg.Go(func() { tallies[i] = call(conn, *method, request, *timeout, stop) })
	}
	wg.Wait()
	elapsed := time.Since(start)

	out := result{DurationUS: elapsed.Microseconds(), Errors: notReady}
	var latencies []int64
	for _, t := range tallies {
		latencies = append(latencies, t.latenciesUS...)
		out.BadStatus += t.badStatus
		out.Errors += t.timeouts
		if t.firstError != nil {
			fmt.Fprintf(os.Stderr, "grpcload: first failed call on a connection: %v\n", t.firstError)
		}
	}
	slices.Sort(latencies)
	out.Requests = len(latencies)
	out.P50US = percentile(latencies, 50)
	out.P99US = percentile(latencies, 99)
	line, err := json.Marshal(out)
	if err != nil {
		fail(err)
	}
	fmt.Println(string(line))
}

// ready connects conn and waits until it is READY, at most timeout.
func ready(conn *grpc.ClientConn, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn.Connect()
	for {
		state := conn.GetState()
		if state == connectivity.Ready {
			return true
		}
		if !conn.WaitForStateChange(ctx, state) {
			return false
		}
	}
}

// call sends request on conn, one call after another, until stop.
func call(conn *grpc.ClientConn, method string, request []byte, timeout time.Duration, stop time.Time) tally {
	var t tally
	var reply []byte
	for time.Now().Before(stop) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		began := time.Now()
		err := conn.Invoke(ctx, method, request, &reply)
		took := time.Since(began)
		timedOut := ctx.Err() != nil
		cancel()
		if err != nil && t.firstError == nil {
			t.firstError = err
		}
		if err != nil && timedOut {
			t.timeouts++
			continue
		}
		if err != nil {
			t.badStatus++
		}
		t.latenciesUS = append(t.latenciesUS, took.Microseconds())
	}
	return t
}

// percentile of sorted values (nearest rank); 0 when there are none.
func percentile(sorted []int64, p float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[max(rank, 1)-1]
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "grpcload: %v\n", err)
	os.Exit(1)
}
