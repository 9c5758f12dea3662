package bayes

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// The Redis layout (every key under RedisOptions.Prefix, "mxgate:bayes:"
// by default):
//
//	PREFIX t:HHHHHHHHHHHHHHHH   hash {h: ham count, s: spam count} of one
//	                            feature (16 hex digits)
//	PREFIX learned              hash {ham: n, spam: n} learnt messages
//
// A lookup is one pipeline of HMGETs; a learn is one MULTI/EXEC of
// HINCRBYs, so the counts of a message and the message counts change
// together for every node.
const DefaultRedisPrefix = "mxgate:bayes:"

// RedisOptions configure OpenRedis.
type RedisOptions struct {
	Addr     string // host:port
	Username string
	Password string
	DB       int
	Prefix   string // DefaultRedisPrefix when empty
	// Timeout bounds dialing and each read and write; 2 s when zero.
	Timeout time.Duration
}

// RedisStore is a Store in Redis, shared by every node.
type RedisStore struct {
	c      *redis.Client
	prefix string
}

// OpenRedis returns a store on the Redis server at o.Addr. It does not
// connect until used: a server down now is an error of each call, and
// calls work again once it is back.
func OpenRedis(o RedisOptions) *RedisStore {
	if o.Prefix == "" {
		o.Prefix = DefaultRedisPrefix
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	c := redis.NewClient(&redis.Options{
		Addr: o.Addr, Username: o.Username, Password: o.Password, DB: o.DB,
		DialTimeout: o.Timeout, ReadTimeout: o.Timeout, WriteTimeout: o.Timeout,
		// Retries on a fresh connection after the server restarted;
		// a server that refuses connections is an error at once (the
		// message is not held up by backoff).
		MaxRetries:    2,
		DialerRetries: 1,
	})
	return &RedisStore{c: c, prefix: o.Prefix}
}

func (r *RedisStore) featKey(f uint64) string {
	var b [16]byte
	const hex = "0123456789abcdef"
	for i := 15; i >= 0; i-- {
		b[i] = hex[f&0xf]
		f >>= 4
	}
	return r.prefix + "t:" + string(b[:])
}

func (r *RedisStore) learnedKey() string { return r.prefix + "learned" }

// Ping checks that the server answers.
func (r *RedisStore) Ping(ctx context.Context) error {
	if err := r.c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("bayes redis ping: %w", err)
	}
	return nil
}

// Lookup implements Store.
func (r *RedisStore) Lookup(ctx context.Context, feats []uint64) (nham, nspam int64, counts []Counts, err error) {
	cmds := make([]*redis.SliceCmd, len(feats))
	var learned *redis.SliceCmd
	_, err = r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		learned = p.HMGet(ctx, r.learnedKey(), "ham", "spam")
		for i, f := range feats {
			cmds[i] = p.HMGet(ctx, r.featKey(f), "h", "s")
		}
		return nil
	})
	if err != nil {
		return 0, 0, nil, fmt.Errorf("bayes redis lookup: %w", err)
	}
	vals := learned.Val()
	nham, nspam = toInt(vals, 0), toInt(vals, 1)
	counts = make([]Counts, len(feats))
	for i, c := range cmds {
		v := c.Val()
		counts[i] = Counts{Ham: toInt(v, 0), Spam: toInt(v, 1)}
	}
	return nham, nspam, counts, nil
}

// Learned implements Store.
func (r *RedisStore) Learned(ctx context.Context) (nham, nspam int64, err error) {
	v, err := r.c.HMGet(ctx, r.learnedKey(), "ham", "spam").Result()
	if err != nil {
		return 0, 0, fmt.Errorf("bayes redis counts: %w", err)
	}
	return toInt(v, 0), toInt(v, 1), nil
}

// Learn implements Store.
func (r *RedisStore) Learn(ctx context.Context, feats []uint64, spam bool, delta int64) error {
	field, class := "h", "ham"
	if spam {
		field, class = "s", "spam"
	}
	_, err := r.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, f := range feats {
			p.HIncrBy(ctx, r.featKey(f), field, delta)
		}
		p.HIncrBy(ctx, r.learnedKey(), class, delta)
		return nil
	})
	if err != nil {
		return fmt.Errorf("bayes redis learn: %w", err)
	}
	return nil
}

// Close implements Store.
func (r *RedisStore) Close() error { return r.c.Close() }

// toInt reads the i-th HMGET value: a missing field is 0.
func toInt(v []any, i int) int64 {
	if i >= len(v) {
		return 0
	}
	s, ok := v[i].(string)
	if !ok {
		return 0
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0
	}
	return n
}
