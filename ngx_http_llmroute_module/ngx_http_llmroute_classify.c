
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * Request-complexity classifier.  A score is a weighted sum of a few
 * features, each scaled to 0..1 (output: -1..1), computed from the parsed
 * request and from one pass over a bounded window of its text; two
 * thresholds cut the score into simple / moderate / complex.
 *
 * The text is scanned as the raw, still JSON-escaped body bytes: "\n" is a
 * backslash and an "n", so escapes are word breaks, never letters.  Fenced,
 * `inline` and pasted code (lines dense with punctuation, indented, ending
 * in ";" or "{") is measured, not read.  Prose words are hashed (lower
 * case, an apostrophe dropped, a light suffix stemmer) and looked up, alone
 * and paired with the word before, in an open-addressing table built once
 * from the keyword list below; two bitmaps reject most words before the
 * stemmer and the probe.  One pass, no backtracking, no allocation, stack
 * only.  docs/classifier.md documents the features and their evaluation.
 */


#include <ngx_http_llmroute_core.h>


/*
 * the word scan is bounded so that a 1 MB ask costs the same as a 3 KB
 * one: its first HEAD bytes plus its last TAIL bytes.  Every feature read
 * from words saturates well inside them (256 prose words is about 1.5 KB);
 * in between, fenced code is still measured exactly with memchr and the
 * unfenced bytes count as code in the proportion the head had.  The corpus
 * is fitted on features read the same way (a -D for experiments only)
 */
#ifndef NGX_HTTP_LLMROUTE_SCAN_HEAD
#define NGX_HTTP_LLMROUTE_SCAN_HEAD      (2 * 1024)
#endif
#ifndef NGX_HTTP_LLMROUTE_SCAN_TAIL
#define NGX_HTTP_LLMROUTE_SCAN_TAIL      1024
#endif

#define NGX_HTTP_LLMROUTE_FOLLOWUP_WORDS 10

#define NGX_HTTP_LLMROUTE_KW_HARD        0
#define NGX_HTTP_LLMROUTE_KW_TASK        1
#define NGX_HTTP_LLMROUTE_KW_MECH        2
#define NGX_HTTP_LLMROUTE_KW_EASY        3
#define NGX_HTTP_LLMROUTE_KW_NCLASS      4

#define NGX_HTTP_LLMROUTE_KW_SLOTS       1024   /* power of 2, > 2x words */
#define NGX_HTTP_LLMROUTE_KW_MAX         512
#define NGX_HTTP_LLMROUTE_KW_PENDING     16

#define NGX_HTTP_LLMROUTE_HASH_SEED      0xcbf29ce484222325ULL
#define NGX_HTTP_LLMROUTE_HASH_MUL       0xff51afd7ed558ccdULL
#define NGX_HTTP_LLMROUTE_HASH_END       0xc4ceb9fe1a85ec53ULL
#define NGX_HTTP_LLMROUTE_PAIR_MIX       0x9e3779b97f4a7c15ULL

/* the stemmer, and its hash, inline: not calls per word */
#if defined(__GNUC__)
#define ngx_http_llmroute_inline  inline __attribute__((always_inline))
#else
#define ngx_http_llmroute_inline  inline
#endif

/*
 * a word's hash takes its letters 8 at a time: each group of 8 (the last
 * one of 1 to 8) as a number, its first letter in the high byte, mixed in
 * by a multiplication; the count of letters is in the seed.  Every step
 * is invertible, so no two words of up to 8 letters share a hash.  Letters
 * and digits are lower case as c | 0x20
 */
#define ngx_http_llmroute_hash_step(h, v)                                     \
    (h = ((h) ^ (v)) * NGX_HTTP_LLMROUTE_HASH_MUL, h ^= (h) >> 29)

#define ngx_http_llmroute_hash_end(h)                                         \
    ((((h) ^ ((h) >> 33)) * NGX_HTTP_LLMROUTE_HASH_END)                      \
     ^ ((((h) ^ ((h) >> 33)) * NGX_HTTP_LLMROUTE_HASH_END) >> 33))

/* a word's first four letters (or digits): in the set of keyword starts */
#define NGX_HTTP_LLMROUTE_KW_STARTS_LOG  14
#define NGX_HTTP_LLMROUTE_KW_STARTS      (1 << NGX_HTTP_LLMROUTE_KW_STARTS_LOG)

#define ngx_http_llmroute_kw_start(p)                                         \
    (ngx_http_llmroute_kw_starts[ngx_http_llmroute_classify_start4(p) / 64]  \
     & ((uint64_t) 1 << (ngx_http_llmroute_classify_start4(p) % 64)))


typedef enum {
    NGX_HTTP_LLMROUTE_F_LENGTH = 0,
    NGX_HTTP_LLMROUTE_F_WORDS,
    NGX_HTTP_LLMROUTE_F_STEPS,
    NGX_HTTP_LLMROUTE_F_CODE,
    NGX_HTTP_LLMROUTE_F_REASONING,
    NGX_HTTP_LLMROUTE_F_TASK,
    NGX_HTTP_LLMROUTE_F_MECHANICAL,
    NGX_HTTP_LLMROUTE_F_EASY,
    NGX_HTTP_LLMROUTE_F_TURNS,
    NGX_HTTP_LLMROUTE_F_TOOLS,
    NGX_HTTP_LLMROUTE_F_OUTPUT,
    NGX_HTTP_LLMROUTE_F_JSON,
    NGX_HTTP_LLMROUTE_NFEATURES
} ngx_http_llmroute_feature_e;


typedef struct {
    const char                 *text;   /* a word, or two words and a space */
    ngx_uint_t                  cls;
} ngx_http_llmroute_keyword_t;


typedef struct {
    uint64_t                    key;
    ngx_uint_t                  kw;     /* keyword index + 1, 0: empty */
} ngx_http_llmroute_kw_slot_t;


/* a word's two bits side by side: one index computed for both tests */
typedef struct {
    uint64_t                    words;  /* a keyword of one word */
    uint64_t                    firsts; /* the first word of a pair */
} ngx_http_llmroute_kw_bits_t;


typedef struct {
    uint64_t                    seen[NGX_HTTP_LLMROUTE_KW_MAX / 64];
    ngx_uint_t                  hits[NGX_HTTP_LLMROUTE_KW_NCLASS];
    ngx_uint_t                  words;      /* prose words of the ask */
    ngx_uint_t                  items;      /* list items, "(2)" markers */
    ngx_uint_t                  questions;
    size_t                      code;       /* code bytes of the ask */

    /* the current line, committed at its end unless it is code */
    u_char                     *line;
    ngx_uint_t                  line_words;
    ngx_uint_t                  line_alnum;
    ngx_uint_t                  line_syms;
    ngx_uint_t                  line_items;
    ngx_uint_t                  line_questions;
    ngx_uint_t                  line_commas;
    ngx_uint_t                  npending;   /* keywords first hit here */

    unsigned                    count:1;    /* the ask: count words, code */
    unsigned                    in_code:1;  /* kept across windows */
    unsigned                    code_line:1;

    /* last: read up to npending only, so never cleared */
    ngx_uint_t                  pending[NGX_HTTP_LLMROUTE_KW_PENDING];
} ngx_http_llmroute_scan_t;


static void ngx_http_llmroute_classify_build(void);
static void ngx_http_llmroute_classify_bit(uint64_t h, ngx_uint_t first);
static void ngx_http_llmroute_classify_start(u_char *p, size_t len);
static ngx_http_llmroute_inline uint32_t ngx_http_llmroute_classify_start4(
    u_char *p);
static uint64_t ngx_http_llmroute_classify_hash(u_char *p, size_t len);
static size_t ngx_http_llmroute_classify_mark(u_char *p, u_char *last);
static uint64_t ngx_http_llmroute_classify_letters_hash(u_char *p,
    size_t n, size_t marks);
static ngx_http_llmroute_inline uint64_t
    ngx_http_llmroute_classify_hash_lc(u_char *p, size_t n);
static ngx_http_llmroute_inline uint64_t ngx_http_llmroute_classify_stem(
    u_char *p, u_char *last, size_t n, size_t marks, u_char *start,
    u_char *end);
static inline uint64_t ngx_http_llmroute_be64(u_char *p);
static ngx_http_llmroute_inline size_t ngx_http_llmroute_classify_suffix(
    uint64_t t, size_t n);
static void ngx_http_llmroute_classify_insert(uint64_t key, ngx_uint_t kw);
static ngx_uint_t ngx_http_llmroute_classify_key(uint64_t key);
static ngx_http_llmroute_inline void ngx_http_llmroute_classify_lookup(
    ngx_http_llmroute_scan_t *sc, uint64_t key);
static void ngx_http_llmroute_classify_short(void);
static ngx_uint_t ngx_http_llmroute_classify_vector(
    ngx_http_llmroute_req_t *req, double *f, ngx_uint_t n,
    ngx_uint_t *msg, ngx_uint_t *nmsg);
static void ngx_http_llmroute_classify_message(ngx_http_llmroute_scan_t *sc,
    u_char *p, u_char *last, ngx_uint_t parts, size_t head, size_t tail);
static void ngx_http_llmroute_classify_prose(ngx_http_llmroute_scan_t *sc,
    u_char *p, u_char *last, size_t head, size_t tail);
static void ngx_http_llmroute_classify_text(ngx_http_llmroute_scan_t *sc,
    u_char *p, u_char *last, size_t head, size_t tail);
static void ngx_http_llmroute_classify_scan(ngx_http_llmroute_scan_t *sc,
    u_char *p, u_char *last);
static inline u_char *ngx_http_llmroute_classify_letters(u_char *p,
    u_char *last, u_char *guard);
static ngx_uint_t ngx_http_llmroute_classify_tick_closes(u_char *p,
    u_char *last);
static void ngx_http_llmroute_classify_bol(ngx_http_llmroute_scan_t *sc,
    u_char *p);
static u_char *ngx_http_llmroute_classify_indent(
    ngx_http_llmroute_scan_t *sc, u_char *p, u_char *last);
static void ngx_http_llmroute_classify_eol(ngx_http_llmroute_scan_t *sc,
    u_char *p);
static size_t ngx_http_llmroute_classify_fences(ngx_http_llmroute_scan_t *sc,
    u_char *p, u_char *last);
static u_char *ngx_http_llmroute_classify_copy(u_char *p, u_char *last,
    const char *s);
static u_char *ngx_http_llmroute_classify_number(u_char *p, u_char *last,
    double v, ngx_uint_t decimals);
static double ngx_http_llmroute_classify_log2(double x);
static double ngx_http_llmroute_classify_ramp(double x, double lo, double hi);

/*
 * the raw feature vector, for tools/classify_report -f (weight tuning);
 * belongs in ngx_http_llmroute_core.h
 */
ngx_uint_t ngx_http_llmroute_classify_features(ngx_http_llmroute_req_t *req,
    double *f, ngx_uint_t n);


/* feature names, then the two thresholds: llmroute_classifier NAME=VALUE */
ngx_str_t  ngx_http_llmroute_classifier_names[] = {
    ngx_string("length"),
    ngx_string("words"),
    ngx_string("steps"),
    ngx_string("code"),
    ngx_string("reasoning"),
    ngx_string("task"),
    ngx_string("mechanical"),
    ngx_string("easy"),
    ngx_string("turns"),
    ngx_string("tools"),
    ngx_string("output"),
    ngx_string("json"),
    ngx_null_string
};


/*
 * the default weights and thresholds, fitted by tools/train_classifier.py
 * on the labeled corpus (docs/classifier.md)
 */
#include <ngx_http_llmroute_classify_weights.h>


/*
 * Vocabulary, by what it says about the work asked for.  Only prose is
 * matched (not code, fenced, `inline` or pasted), words are stemmed alike
 * on both sides ("partitioned" is "partition"), and "-", "_" and "/" join
 * the two words of a pair ("lock-free", "memory_order").  Hits count once
 * per keyword, so repeating a word is no more evidence than saying it once.
 *
 * HARD: design, proofs, distributed state, concurrency, security,
 * soundness, diagnosis from evidence.
 */
static ngx_http_llmroute_keyword_t  ngx_http_llmroute_keywords[] = {
    /* design and architecture */
    { "architecture", NGX_HTTP_LLMROUTE_KW_HARD },
    { "architectural", NGX_HTTP_LLMROUTE_KW_HARD },
    { "design", NGX_HTTP_LLMROUTE_KW_HARD },
    { "system design", NGX_HTTP_LLMROUTE_KW_HARD },
    { "tradeoff", NGX_HTTP_LLMROUTE_KW_HARD },
    { "trade off", NGX_HTTP_LLMROUTE_KW_HARD },
    { "monolith", NGX_HTTP_LLMROUTE_KW_HARD },
    { "microservice", NGX_HTTP_LLMROUTE_KW_HARD },
    { "bounded context", NGX_HTTP_LLMROUTE_KW_HARD },
    { "circular dependency", NGX_HTTP_LLMROUTE_KW_HARD },
    { "tight coupling", NGX_HTTP_LLMROUTE_KW_HARD },
    { "tightly coupled", NGX_HTTP_LLMROUTE_KW_HARD },
    { "loose coupling", NGX_HTTP_LLMROUTE_KW_HARD },
    { "loosely coupled", NGX_HTTP_LLMROUTE_KW_HARD },
    { "decouple", NGX_HTTP_LLMROUTE_KW_HARD },
    { "hexagonal", NGX_HTTP_LLMROUTE_KW_HARD },
    { "event sourcing", NGX_HTTP_LLMROUTE_KW_HARD },
    { "cqrs", NGX_HTTP_LLMROUTE_KW_HARD },
    { "saga", NGX_HTTP_LLMROUTE_KW_HARD },
    { "outbox", NGX_HTTP_LLMROUTE_KW_HARD },
    { "backward compatibility", NGX_HTTP_LLMROUTE_KW_HARD },
    { "backwards compatibility", NGX_HTTP_LLMROUTE_KW_HARD },
    { "backward compatible", NGX_HTTP_LLMROUTE_KW_HARD },
    { "backwards compatible", NGX_HTTP_LLMROUTE_KW_HARD },
    { "migration plan", NGX_HTTP_LLMROUTE_KW_HARD },
    { "migration strategy", NGX_HTTP_LLMROUTE_KW_HARD },
    { "phased", NGX_HTTP_LLMROUTE_KW_HARD },
    { "cutover", NGX_HTTP_LLMROUTE_KW_HARD },
    { "scalability", NGX_HTTP_LLMROUTE_KW_HARD },
    { "scalable", NGX_HTTP_LLMROUTE_KW_HARD },
    { "high availability", NGX_HTTP_LLMROUTE_KW_HARD },
    { "fault tolerance", NGX_HTTP_LLMROUTE_KW_HARD },
    { "fault tolerant", NGX_HTTP_LLMROUTE_KW_HARD },
    { "failure mode", NGX_HTTP_LLMROUTE_KW_HARD },
    { "disaster recovery", NGX_HTTP_LLMROUTE_KW_HARD },
    { "capacity planning", NGX_HTTP_LLMROUTE_KW_HARD },
    { "multi tenant", NGX_HTTP_LLMROUTE_KW_HARD },
    { "multitenant", NGX_HTTP_LLMROUTE_KW_HARD },
    { "tenant isolation", NGX_HTTP_LLMROUTE_KW_HARD },

    /* proofs, algorithms, languages */
    { "invariant", NGX_HTTP_LLMROUTE_KW_HARD },
    { "proof", NGX_HTTP_LLMROUTE_KW_HARD },
    { "prove", NGX_HTTP_LLMROUTE_KW_HARD },
    { "correctness", NGX_HTTP_LLMROUTE_KW_HARD },
    { "formally", NGX_HTTP_LLMROUTE_KW_HARD },
    { "formal verification", NGX_HTTP_LLMROUTE_KW_HARD },
    { "theorem", NGX_HTTP_LLMROUTE_KW_HARD },
    { "lemma", NGX_HTTP_LLMROUTE_KW_HARD },
    { "induction", NGX_HTTP_LLMROUTE_KW_HARD },
    { "np hard", NGX_HTTP_LLMROUTE_KW_HARD },
    { "np complete", NGX_HTTP_LLMROUTE_KW_HARD },
    { "asymptotic", NGX_HTTP_LLMROUTE_KW_HARD },
    { "time complexity", NGX_HTTP_LLMROUTE_KW_HARD },
    { "space complexity", NGX_HTTP_LLMROUTE_KW_HARD },
    { "amortized", NGX_HTTP_LLMROUTE_KW_HARD },
    { "lower bound", NGX_HTTP_LLMROUTE_KW_HARD },
    { "upper bound", NGX_HTTP_LLMROUTE_KW_HARD },
    { "optimality", NGX_HTTP_LLMROUTE_KW_HARD },
    { "counterexample", NGX_HTTP_LLMROUTE_KW_HARD },
    { "approximation algorithm", NGX_HTTP_LLMROUTE_KW_HARD },
    { "dynamic programming", NGX_HTTP_LLMROUTE_KW_HARD },
    { "type inference", NGX_HTTP_LLMROUTE_KW_HARD },
    { "unification", NGX_HTTP_LLMROUTE_KW_HARD },
    { "polymorphism", NGX_HTTP_LLMROUTE_KW_HARD },
    { "type system", NGX_HTTP_LLMROUTE_KW_HARD },
    { "type checker", NGX_HTTP_LLMROUTE_KW_HARD },
    { "garbage collector", NGX_HTTP_LLMROUTE_KW_HARD },
    { "garbage collection", NGX_HTTP_LLMROUTE_KW_HARD },
    { "write barrier", NGX_HTTP_LLMROUTE_KW_HARD },
    { "compiler", NGX_HTTP_LLMROUTE_KW_HARD },
    { "bytecode", NGX_HTTP_LLMROUTE_KW_HARD },

    /* distributed state */
    { "distributed", NGX_HTTP_LLMROUTE_KW_HARD },
    { "consensus", NGX_HTTP_LLMROUTE_KW_HARD },
    { "quorum", NGX_HTTP_LLMROUTE_KW_HARD },
    { "raft", NGX_HTTP_LLMROUTE_KW_HARD },
    { "paxos", NGX_HTTP_LLMROUTE_KW_HARD },
    { "byzantine", NGX_HTTP_LLMROUTE_KW_HARD },
    { "split brain", NGX_HTTP_LLMROUTE_KW_HARD },
    { "linearizable", NGX_HTTP_LLMROUTE_KW_HARD },
    { "linearizability", NGX_HTTP_LLMROUTE_KW_HARD },
    { "serializable", NGX_HTTP_LLMROUTE_KW_HARD },
    { "serializability", NGX_HTTP_LLMROUTE_KW_HARD },
    { "isolation level", NGX_HTTP_LLMROUTE_KW_HARD },
    { "consistency", NGX_HTTP_LLMROUTE_KW_HARD },
    { "eventually consistent", NGX_HTTP_LLMROUTE_KW_HARD },
    { "eventual consistency", NGX_HTTP_LLMROUTE_KW_HARD },
    { "strongly consistent", NGX_HTTP_LLMROUTE_KW_HARD },
    { "strong consistency", NGX_HTTP_LLMROUTE_KW_HARD },
    { "sharding", NGX_HTTP_LLMROUTE_KW_HARD },
    { "shard", NGX_HTTP_LLMROUTE_KW_HARD },
    { "resharding", NGX_HTTP_LLMROUTE_KW_HARD },
    { "partition", NGX_HTTP_LLMROUTE_KW_HARD },
    { "replication", NGX_HTTP_LLMROUTE_KW_HARD },
    { "replica", NGX_HTTP_LLMROUTE_KW_HARD },
    { "multi region", NGX_HTTP_LLMROUTE_KW_HARD },
    { "cross region", NGX_HTTP_LLMROUTE_KW_HARD },
    { "failover", NGX_HTTP_LLMROUTE_KW_HARD },
    { "leader election", NGX_HTTP_LLMROUTE_KW_HARD },
    { "fencing", NGX_HTTP_LLMROUTE_KW_HARD },
    { "idempotent", NGX_HTTP_LLMROUTE_KW_HARD },
    { "idempotency", NGX_HTTP_LLMROUTE_KW_HARD },
    { "exactly once", NGX_HTTP_LLMROUTE_KW_HARD },
    { "least once", NGX_HTTP_LLMROUTE_KW_HARD },
    { "most once", NGX_HTTP_LLMROUTE_KW_HARD },
    { "ordering guarantee", NGX_HTTP_LLMROUTE_KW_HARD },
    { "clock skew", NGX_HTTP_LLMROUTE_KW_HARD },
    { "vector clock", NGX_HTTP_LLMROUTE_KW_HARD },
    { "crdt", NGX_HTTP_LLMROUTE_KW_HARD },
    { "two phase", NGX_HTTP_LLMROUTE_KW_HARD },
    { "backpressure", NGX_HTTP_LLMROUTE_KW_HARD },
    { "skew", NGX_HTTP_LLMROUTE_KW_HARD },

    /* concurrency */
    { "concurrency", NGX_HTTP_LLMROUTE_KW_HARD },
    { "concurrent", NGX_HTTP_LLMROUTE_KW_HARD },
    { "race", NGX_HTTP_LLMROUTE_KW_HARD },
    { "race condition", NGX_HTTP_LLMROUTE_KW_HARD },
    { "data race", NGX_HTTP_LLMROUTE_KW_HARD },
    { "deadlock", NGX_HTTP_LLMROUTE_KW_HARD },
    { "livelock", NGX_HTTP_LLMROUTE_KW_HARD },
    { "starvation", NGX_HTTP_LLMROUTE_KW_HARD },
    { "starve", NGX_HTTP_LLMROUTE_KW_HARD },
    { "lock free", NGX_HTTP_LLMROUTE_KW_HARD },
    { "wait free", NGX_HTTP_LLMROUTE_KW_HARD },
    { "lock ordering", NGX_HTTP_LLMROUTE_KW_HARD },
    { "memory order", NGX_HTTP_LLMROUTE_KW_HARD },
    { "memory ordering", NGX_HTTP_LLMROUTE_KW_HARD },
    { "memory model", NGX_HTTP_LLMROUTE_KW_HARD },
    { "happens before", NGX_HTTP_LLMROUTE_KW_HARD },
    { "interleaving", NGX_HTTP_LLMROUTE_KW_HARD },
    { "atomic", NGX_HTTP_LLMROUTE_KW_HARD },
    { "atomicity", NGX_HTTP_LLMROUTE_KW_HARD },
    { "false sharing", NGX_HTTP_LLMROUTE_KW_HARD },
    { "double checked", NGX_HTTP_LLMROUTE_KW_HARD },
    { "synchronization", NGX_HTTP_LLMROUTE_KW_HARD },
    { "thread safety", NGX_HTTP_LLMROUTE_KW_HARD },
    { "semaphore", NGX_HTTP_LLMROUTE_KW_HARD },
    { "contention", NGX_HTTP_LLMROUTE_KW_HARD },
    { "reentrant", NGX_HTTP_LLMROUTE_KW_HARD },
    { "fairness", NGX_HTTP_LLMROUTE_KW_HARD },

    /* security and soundness */
    { "security", NGX_HTTP_LLMROUTE_KW_HARD },
    { "audit", NGX_HTTP_LLMROUTE_KW_HARD },
    { "vulnerability", NGX_HTTP_LLMROUTE_KW_HARD },
    { "vulnerable", NGX_HTTP_LLMROUTE_KW_HARD },
    { "exploit", NGX_HTTP_LLMROUTE_KW_HARD },
    { "attacker", NGX_HTTP_LLMROUTE_KW_HARD },
    { "attack", NGX_HTTP_LLMROUTE_KW_HARD },
    { "threat model", NGX_HTTP_LLMROUTE_KW_HARD },
    { "threat", NGX_HTTP_LLMROUTE_KW_HARD },
    { "pentest", NGX_HTTP_LLMROUTE_KW_HARD },
    { "privilege escalation", NGX_HTTP_LLMROUTE_KW_HARD },
    { "injection", NGX_HTTP_LLMROUTE_KW_HARD },
    { "ssrf", NGX_HTTP_LLMROUTE_KW_HARD },
    { "csrf", NGX_HTTP_LLMROUTE_KW_HARD },
    { "xss", NGX_HTTP_LLMROUTE_KW_HARD },
    { "replay", NGX_HTTP_LLMROUTE_KW_HARD },
    { "tampering", NGX_HTTP_LLMROUTE_KW_HARD },
    { "spoofing", NGX_HTTP_LLMROUTE_KW_HARD },
    { "side channel", NGX_HTTP_LLMROUTE_KW_HARD },
    { "timing attack", NGX_HTTP_LLMROUTE_KW_HARD },
    { "cryptographic", NGX_HTTP_LLMROUTE_KW_HARD },
    { "sandbox", NGX_HTTP_LLMROUTE_KW_HARD },
    { "soundness", NGX_HTTP_LLMROUTE_KW_HARD },
    { "unsound", NGX_HTTP_LLMROUTE_KW_HARD },
    { "undefined behavior", NGX_HTTP_LLMROUTE_KW_HARD },
    { "undefined behaviour", NGX_HTTP_LLMROUTE_KW_HARD },
    { "memory safety", NGX_HTTP_LLMROUTE_KW_HARD },
    { "after free", NGX_HTTP_LLMROUTE_KW_HARD },
    { "aliasing", NGX_HTTP_LLMROUTE_KW_HARD },

    /* diagnosis from evidence */
    { "root cause", NGX_HTTP_LLMROUTE_KW_HARD },
    { "hypothesis", NGX_HTTP_LLMROUTE_KW_HARD },
    { "hypotheses", NGX_HTTP_LLMROUTE_KW_HARD },
    { "investigate", NGX_HTTP_LLMROUTE_KW_HARD },
    { "postmortem", NGX_HTTP_LLMROUTE_KW_HARD },
    { "incident", NGX_HTTP_LLMROUTE_KW_HARD },
    { "intermittent", NGX_HTTP_LLMROUTE_KW_HARD },
    { "nondeterministic", NGX_HTTP_LLMROUTE_KW_HARD },
    { "non deterministic", NGX_HTTP_LLMROUTE_KW_HARD },
    { "heisenbug", NGX_HTTP_LLMROUTE_KW_HARD },
    { "narrow down", NGX_HTTP_LLMROUTE_KW_HARD },
    { "correlate", NGX_HTTP_LLMROUTE_KW_HARD },
    { "tail latency", NGX_HTTP_LLMROUTE_KW_HARD },
    { "p99", NGX_HTTP_LLMROUTE_KW_HARD },
    { "p999", NGX_HTTP_LLMROUTE_KW_HARD },

    /* TASK: real engineering work on code */

    { "fix", NGX_HTTP_LLMROUTE_KW_TASK },
    { "bug", NGX_HTTP_LLMROUTE_KW_TASK },
    { "debug", NGX_HTTP_LLMROUTE_KW_TASK },
    { "leak", NGX_HTTP_LLMROUTE_KW_TASK },
    { "flaky", NGX_HTTP_LLMROUTE_KW_TASK },
    { "compile", NGX_HTTP_LLMROUTE_KW_TASK },
    { "crash", NGX_HTTP_LLMROUTE_KW_TASK },
    { "segfault", NGX_HTTP_LLMROUTE_KW_TASK },
    { "hang", NGX_HTTP_LLMROUTE_KW_TASK },
    { "regression", NGX_HTTP_LLMROUTE_KW_TASK },
    { "slow", NGX_HTTP_LLMROUTE_KW_TASK },
    { "performance", NGX_HTTP_LLMROUTE_KW_TASK },
    { "optimize", NGX_HTTP_LLMROUTE_KW_TASK },
    { "optimise", NGX_HTTP_LLMROUTE_KW_TASK },
    { "speed up", NGX_HTTP_LLMROUTE_KW_TASK },
    { "bottleneck", NGX_HTTP_LLMROUTE_KW_TASK },
    { "latency", NGX_HTTP_LLMROUTE_KW_TASK },
    { "throughput", NGX_HTTP_LLMROUTE_KW_TASK },
    { "memory usage", NGX_HTTP_LLMROUTE_KW_TASK },
    { "refactor", NGX_HTTP_LLMROUTE_KW_TASK },
    { "restructure", NGX_HTTP_LLMROUTE_KW_TASK },
    { "redesign", NGX_HTTP_LLMROUTE_KW_TASK },
    { "implement", NGX_HTTP_LLMROUTE_KW_TASK },
    { "review", NGX_HTTP_LLMROUTE_KW_TASK },
    { "edge case", NGX_HTTP_LLMROUTE_KW_TASK },
    { "corner case", NGX_HTTP_LLMROUTE_KW_TASK },
    { "error handling", NGX_HTTP_LLMROUTE_KW_TASK },
    { "production", NGX_HTTP_LLMROUTE_KW_TASK },
    { "robust", NGX_HTTP_LLMROUTE_KW_TASK },
    { "reliable", NGX_HTTP_LLMROUTE_KW_TASK },
    { "safely", NGX_HTTP_LLMROUTE_KW_TASK },
    { "downtime", NGX_HTTP_LLMROUTE_KW_TASK },
    { "backfill", NGX_HTTP_LLMROUTE_KW_TASK },
    { "migration", NGX_HTTP_LLMROUTE_KW_TASK },
    { "migrate", NGX_HTTP_LLMROUTE_KW_TASK },
    { "cancellation", NGX_HTTP_LLMROUTE_KW_TASK },
    { "timeout", NGX_HTTP_LLMROUTE_KW_TASK },
    { "retry", NGX_HTTP_LLMROUTE_KW_TASK },
    { "thread safe", NGX_HTTP_LLMROUTE_KW_TASK },
    { "generic", NGX_HTTP_LLMROUTE_KW_TASK },
    { "test", NGX_HTTP_LLMROUTE_KW_TASK },
    { "requirement", NGX_HTTP_LLMROUTE_KW_TASK },
    { "constraint", NGX_HTTP_LLMROUTE_KW_TASK },
    { "validation", NGX_HTTP_LLMROUTE_KW_TASK },
    { "index", NGX_HTTP_LLMROUTE_KW_TASK },
    { "query plan", NGX_HTTP_LLMROUTE_KW_TASK },

    /* MECH: transformations and look-ups; length does not make them hard */

    /* transformations */
    { "reformat", NGX_HTTP_LLMROUTE_KW_MECH },
    { "pretty print", NGX_HTTP_LLMROUTE_KW_MECH },
    { "prettify", NGX_HTTP_LLMROUTE_KW_MECH },
    { "indent", NGX_HTTP_LLMROUTE_KW_MECH },
    { "indentation", NGX_HTTP_LLMROUTE_KW_MECH },
    { "convert", NGX_HTTP_LLMROUTE_KW_MECH },
    { "translate", NGX_HTTP_LLMROUTE_KW_MECH },
    { "port this", NGX_HTTP_LLMROUTE_KW_MECH },
    { "port it", NGX_HTTP_LLMROUTE_KW_MECH },
    { "turn this", NGX_HTTP_LLMROUTE_KW_MECH },
    { "turn these", NGX_HTTP_LLMROUTE_KW_MECH },
    { "rename", NGX_HTTP_LLMROUTE_KW_MECH },
    { "change all", NGX_HTTP_LLMROUTE_KW_MECH },
    { "replace all", NGX_HTTP_LLMROUTE_KW_MECH },
    { "alphabetically", NGX_HTTP_LLMROUTE_KW_MECH },
    { "markdown", NGX_HTTP_LLMROUTE_KW_MECH },
    { "csv", NGX_HTTP_LLMROUTE_KW_MECH },
    { "type hint", NGX_HTTP_LLMROUTE_KW_MECH },
    { "typo", NGX_HTTP_LLMROUTE_KW_MECH },
    { "summarize", NGX_HTTP_LLMROUTE_KW_MECH },
    { "summarise", NGX_HTTP_LLMROUTE_KW_MECH },

    /* small, well-known artefacts */
    { "commit message", NGX_HTTP_LLMROUTE_KW_MECH },
    { "changelog", NGX_HTTP_LLMROUTE_KW_MECH },
    { "docstring", NGX_HTTP_LLMROUTE_KW_MECH },
    { "doc comment", NGX_HTTP_LLMROUTE_KW_MECH },
    { "jsdoc", NGX_HTTP_LLMROUTE_KW_MECH },
    { "javadoc", NGX_HTTP_LLMROUTE_KW_MECH },
    { "license", NGX_HTTP_LLMROUTE_KW_MECH },
    { "copyright", NGX_HTTP_LLMROUTE_KW_MECH },
    { "gitignore", NGX_HTTP_LLMROUTE_KW_MECH },
    { "dockerignore", NGX_HTTP_LLMROUTE_KW_MECH },
    { "boilerplate", NGX_HTTP_LLMROUTE_KW_MECH },
    { "scaffold", NGX_HTTP_LLMROUTE_KW_MECH },
    { "crud", NGX_HTTP_LLMROUTE_KW_MECH },
    { "one liner", NGX_HTTP_LLMROUTE_KW_MECH },
    { "oneliner", NGX_HTTP_LLMROUTE_KW_MECH },
    { "regex", NGX_HTTP_LLMROUTE_KW_MECH },
    { "regexp", NGX_HTTP_LLMROUTE_KW_MECH },
    { "code completion", NGX_HTTP_LLMROUTE_KW_MECH },

    /* "change nothing else": the output is the input, lightly edited */
    { "dont change", NGX_HTTP_LLMROUTE_KW_MECH },
    { "dont touch", NGX_HTTP_LLMROUTE_KW_MECH },
    { "change nothing", NGX_HTTP_LLMROUTE_KW_MECH },
    { "keep everything", NGX_HTTP_LLMROUTE_KW_MECH },
    { "as is", NGX_HTTP_LLMROUTE_KW_MECH },

    /*
     * EASY: weaker hints, common in hard requests too: a look-up question,
     * the asker's own estimate of the difficulty
     */
    { "what does", NGX_HTTP_LLMROUTE_KW_EASY },
    { "what is", NGX_HTTP_LLMROUTE_KW_EASY },
    { "difference between", NGX_HTTP_LLMROUTE_KW_EASY },
    { "unchanged", NGX_HTTP_LLMROUTE_KW_EASY },
    { "simple", NGX_HTTP_LLMROUTE_KW_EASY },
    { "basic", NGX_HTTP_LLMROUTE_KW_EASY },
    { "quick", NGX_HTTP_LLMROUTE_KW_EASY },
    { "trivial", NGX_HTTP_LLMROUTE_KW_EASY },
    { "noob", NGX_HTTP_LLMROUTE_KW_EASY },
    { "beginner", NGX_HTTP_LLMROUTE_KW_EASY },
    { "pls", NGX_HTTP_LLMROUTE_KW_EASY },
    { "plz", NGX_HTTP_LLMROUTE_KW_EASY },

    { NULL, 0 }
};


/* built once (configuration time or first use), read-only afterwards */
static ngx_http_llmroute_kw_slot_t  ngx_http_llmroute_kw_table[
                                        NGX_HTTP_LLMROUTE_KW_SLOTS];
static ngx_uint_t                   ngx_http_llmroute_kw_ready;

/*
 * one bit per keyword word and per first word of a pair: most words are
 * no keyword, and most are no start of a pair, so one bit test spares a
 * table probe for them
 */
static ngx_http_llmroute_kw_bits_t  ngx_http_llmroute_kw_bits[64];

/*
 * the first four letters of every keyword word's stem, hashed to a bit:
 * stemming only cuts suffixes, so a word of four letters or more whose
 * start is not here is neither a keyword nor half of a pair, and is
 * skipped before it is stemmed.  A stem of three letters ("fix", from
 * "fixes") sets the bits of its 36 starts of four ("fixe", "fixi", ...)
 */
static uint64_t                     ngx_http_llmroute_kw_starts[
                                        NGX_HTTP_LLMROUTE_KW_STARTS / 64];

/* lower-case letter or digit; 0 for everything else */
static u_char                       ngx_http_llmroute_kw_lc[256];

/*
 * words of 1 to 3 letters, numbered in base 37 by the letters' codes (1 to
 * 36, ngx_http_llmroute_kw_code): a bit for each whose hash is no keyword
 * and no first word of a pair.  There are only 50 652 such words, so this
 * is exact, computed once from the same hashes: the scan skips hashing
 * them when no pair is open, as their hash would change nothing
 */
#define NGX_HTTP_LLMROUTE_KW_SHORT       (37 * 37 * 37)

static u_char                       ngx_http_llmroute_kw_code[256];
static uint64_t                     ngx_http_llmroute_kw_inert[
                                        NGX_HTTP_LLMROUTE_KW_SHORT / 64 + 1];


void
ngx_http_llmroute_classifier_init(ngx_http_llmroute_classifier_t *cl)
{
    ngx_uint_t  i;

    ngx_memzero(cl, sizeof(ngx_http_llmroute_classifier_t));

    for (i = 0; i < NGX_HTTP_LLMROUTE_NFEATURES; i++) {
        cl->weight[i] = ngx_http_llmroute_classifier_defaults[i];
        cl->moderate_weight[i] =
                              ngx_http_llmroute_classifier_moderate_defaults[i];
    }

    cl->moderate = NGX_HTTP_LLMROUTE_CLASSIFY_MODERATE;
    cl->complex = NGX_HTTP_LLMROUTE_CLASSIFY_COMPLEX;
    cl->bias = 0;

    ngx_http_llmroute_classify_build();
}


ngx_int_t
ngx_http_llmroute_classifier_set(ngx_http_llmroute_classifier_t *cl,
    ngx_str_t *name, double value)
{
    size_t      len;
    u_char     *p;
    ngx_uint_t  i, which;

    if (name->len == 8
        && ngx_strncasecmp(name->data, (u_char *) "moderate", 8) == 0)
    {
        cl->moderate = value;
        return NGX_OK;
    }

    if (name->len == 7
        && ngx_strncasecmp(name->data, (u_char *) "complex", 7) == 0)
    {
        cl->complex = value;
        return NGX_OK;
    }

    /* the cost knob: > 0 sends more to the complex tier, < 0 fewer */

    if (name->len == 4
        && ngx_strncasecmp(name->data, (u_char *) "bias", 4) == 0)
    {
        cl->bias = value;
        return NGX_OK;
    }

    /*
     * "words=1" sets the feature's weight in both decisions,
     * "complex.words=1" or "moderate.words=1" in one
     */

    p = name->data;
    len = name->len;
    which = 3;

    if (len > 8 && ngx_strncasecmp(p, (u_char *) "complex.", 8) == 0) {
        which = 1;
        p += 8;
        len -= 8;

    } else if (len > 9
               && ngx_strncasecmp(p, (u_char *) "moderate.", 9) == 0)
    {
        which = 2;
        p += 9;
        len -= 9;
    }

    for (i = 0; ngx_http_llmroute_classifier_names[i].len; i++) {
        if (ngx_http_llmroute_classifier_names[i].len == len
            && ngx_strncasecmp(ngx_http_llmroute_classifier_names[i].data,
                               p, len)
               == 0)
        {
            if (which & 1) {
                cl->weight[i] = value;
            }

            if (which & 2) {
                cl->moderate_weight[i] = value;
            }

            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


ngx_uint_t
ngx_http_llmroute_classify(ngx_http_llmroute_classifier_t *cl,
    ngx_http_llmroute_req_t *req, u_char *reason, size_t size,
    size_t *reason_len)
{
    ngx_uint_t                    tier;
    ngx_http_llmroute_explain_t   ex;

    tier = ngx_http_llmroute_classify_explained(cl, req, &ex);

    *reason_len = (size == 0) ? 0
                  : ngx_http_llmroute_classify_explain(cl, &ex, reason, size);

    return tier;
}


/*
 * The tier, and in ex what explains it: the explanation is printed by
 * ngx_http_llmroute_classify_explain() only when it is read
 * ($llmroute_reason), not for every request
 */

ngx_uint_t
ngx_http_llmroute_classify_explained(ngx_http_llmroute_classifier_t *cl,
    ngx_http_llmroute_req_t *req, ngx_http_llmroute_explain_t *ex)
{
    double      score, mscore, *f;
    ngx_uint_t  i, tier;

    f = ex->f;

    (void) ngx_http_llmroute_classify_vector(req, f,
                                             NGX_HTTP_LLMROUTE_NFEATURES,
                                             ex->msg, &ex->nmsg);

    score = 0;
    mscore = 0;

    for (i = 0; i < NGX_HTTP_LLMROUTE_NFEATURES; i++) {
        score += cl->weight[i] * f[i];
        mscore += cl->moderate_weight[i] * f[i];
    }

    /*
     * two decisions: complex or not, then moderate or simple.  bias is the
     * cost knob: it moves the complex cut only (complex recall against
     * cost); the simple / moderate cut stays where it was fitted
     */

    ex->moderate = 0;

    if (score + cl->bias >= cl->complex) {
        tier = NGX_HTTP_LLMROUTE_TIER_COMPLEX;

    } else {
        tier = mscore >= cl->moderate ? NGX_HTTP_LLMROUTE_TIER_MODERATE
                                      : NGX_HTTP_LLMROUTE_TIER_SIMPLE;
        ex->moderate = 1;
        score = mscore;
    }

    /* an agent's title call: simple, whatever the message it names */

    ex->utility = ngx_http_llmroute_ask_utility(req) ? 1 : 0;

    if (ex->utility) {
        tier = NGX_HTTP_LLMROUTE_TIER_SIMPLE;
    }

    ex->score = score;
    ex->tier = tier;
    ex->tokens = req->prompt_tokens;

    return tier;
}


/*
 * "score=0.71 reasoning=0.40 ask=0.16 mechanical=-0.20 tokens=1830
 * -> complex": the largest contributions first, at most five, so the
 * line stays well under 200 bytes whatever the weights; printed by
 * hand, snprintf("%.2f") alone would cost more than the scan.  size > 0;
 * the text is NUL-terminated, its length returned.
 */

size_t
ngx_http_llmroute_classify_explain(ngx_http_llmroute_classifier_t *cl,
    ngx_http_llmroute_explain_t *ex, u_char *reason, size_t size)
{
    u_char      *p, *last;
    double       c, best, *w;
    double       contrib[NGX_HTTP_LLMROUTE_NFEATURES];
    ngx_uint_t   i, k, j, shown;

    w = ex->moderate ? cl->moderate_weight : cl->weight;

    p = reason;
    last = reason + size - 1;

    /* the message(s) read as the ask: "ask=msg[7]", "ask=msg[9]+msg[7]" */

    if (ex->utility) {
        p = ngx_http_llmroute_classify_copy(p, last, "utility=title ");
    }

    p = ngx_http_llmroute_classify_copy(p, last, "ask=");

    if (ex->nmsg == 0) {
        p = ngx_http_llmroute_classify_copy(p, last, "none");
    }

    for (i = 0; i < ex->nmsg; i++) {
        p = ngx_http_llmroute_classify_copy(p, last, i ? "+msg[" : "msg[");
        p = ngx_http_llmroute_classify_number(p, last, (double) ex->msg[i],
                                              0);
        p = ngx_http_llmroute_classify_copy(p, last, "]");
    }

    /* the score and the contributions of the decision that set the tier */

    for (i = 0; i < NGX_HTTP_LLMROUTE_NFEATURES; i++) {
        contrib[i] = w[i] * ex->f[i];
    }

    p = ngx_http_llmroute_classify_copy(p, last, " score=");
    p = ngx_http_llmroute_classify_number(p, last, ex->score, 1);

    shown = 0;

    for (k = 0; k < 5; k++) {
        best = 0.005;
        j = NGX_HTTP_LLMROUTE_NFEATURES;

        for (i = 0; i < NGX_HTTP_LLMROUTE_NFEATURES; i++) {
            if (!(shown & (1u << i))) {
                c = contrib[i] < 0 ? -contrib[i] : contrib[i];

                if (c >= best) {
                    best = c;
                    j = i;
                }
            }
        }

        if (j == NGX_HTTP_LLMROUTE_NFEATURES) {
            break;
        }

        shown |= 1u << j;

        p = ngx_http_llmroute_classify_copy(p, last, " ");
        p = ngx_http_llmroute_classify_copy(p, last,
                (char *) ngx_http_llmroute_classifier_names[j].data);
        p = ngx_http_llmroute_classify_copy(p, last, "=");
        p = ngx_http_llmroute_classify_number(p, last, contrib[j], 1);
    }

    p = ngx_http_llmroute_classify_copy(p, last, " tokens=");
    p = ngx_http_llmroute_classify_number(p, last, (double) ex->tokens, 0);
    p = ngx_http_llmroute_classify_copy(p, last, " -> ");
    p = ngx_http_llmroute_classify_copy(p, last,
                (char *) ngx_http_llmroute_tier_names[ex->tier].data);

    *p = '\0';

    return p - reason;
}


ngx_uint_t
ngx_http_llmroute_classify_features(ngx_http_llmroute_req_t *req, double *f,
    ngx_uint_t n)
{
    ngx_uint_t  msg[NGX_HTTP_LLMROUTE_ASK_MAX], nmsg;

    return ngx_http_llmroute_classify_vector(req, f, n, msg, &nmsg);
}


/*
 * the features of the ask: the latest user message with words of its own,
 * read with the one or two before it when it is a short follow-up ("do
 * it", "try again"); the rest of the request (system prompt, tool schemas,
 * answers, tool results, blocks injected into the user turn) is scaffolding
 * and gives sizes and counts only
 */

static ngx_uint_t
ngx_http_llmroute_classify_vector(ngx_http_llmroute_req_t *req, double *f,
    ngx_uint_t n, ngx_uint_t *msg, ngx_uint_t *nmsg)
{
    u_char                    *body;
    size_t                     text;
    double                     v[NGX_HTTP_LLMROUTE_NFEATURES], *out;
    ngx_int_t                  k;
    ngx_uint_t                 i, users, results, calls, parts, na;
    ngx_http_llmroute_msg_t   *m;
    ngx_http_llmroute_scan_t   sc;

    if (!ngx_http_llmroute_kw_ready) {
        ngx_http_llmroute_classify_build();
    }

    ngx_memzero(&sc, offsetof(ngx_http_llmroute_scan_t, pending));

    body = req->body;
    text = req->text_bytes;
    users = 0;
    results = 0;
    calls = 0;

    for (i = 0; i < req->nmsgs; i++) {
        m = &req->msgs[i];

        switch (m->role) {

        case NGX_HTTP_LLMROUTE_ROLE_SYSTEM:
            text -= ngx_min(text, m->text);   /* the app's, not the task's */
            break;

        case NGX_HTTP_LLMROUTE_ROLE_USER:
            users++;
            break;

        case NGX_HTTP_LLMROUTE_ROLE_TOOL:
            results++;
            break;

        case NGX_HTTP_LLMROUTE_ROLE_ASSISTANT:
            calls += m->tool_calls;
            break;
        }
    }

    sc.count = 1;
    na = 0;
    k = req->nmsgs;

    while (na < NGX_HTTP_LLMROUTE_ASK_MAX) {
        k = ngx_http_llmroute_ask_prev(req, k);

        if (k < 0) {
            break;
        }

        m = &req->msgs[k];
        msg[na++] = k;

        parts = ngx_http_llmroute_ask_is_parts(req, m);

        ngx_http_llmroute_classify_message(&sc, body + m->start,
                                           body + m->end, parts,
                                           NGX_HTTP_LLMROUTE_SCAN_HEAD,
                                           NGX_HTTP_LLMROUTE_SCAN_TAIL);

        /*
         * a follow-up is short, has no code and names no task of its own
         * ("now the tests", "fix it" do follow up; "now design the
         * multi-region version" is a new ask)
         */

        if (sc.words >= NGX_HTTP_LLMROUTE_FOLLOWUP_WORDS || sc.code
            || sc.hits[NGX_HTTP_LLMROUTE_KW_HARD]
               + sc.hits[NGX_HTTP_LLMROUTE_KW_MECH])
        {
            break;
        }
    }

    *nmsg = na;

    /*
     * scales: where a feature starts to count and where it saturates;
     * written into f itself when it has room for all
     */

    out = (n >= NGX_HTTP_LLMROUTE_NFEATURES) ? f : v;

    out[NGX_HTTP_LLMROUTE_F_LENGTH] = ngx_http_llmroute_classify_ramp(
        ngx_http_llmroute_classify_log2((double) text / 4 + 1),
        ngx_http_llmroute_classify_log2(128),
        ngx_http_llmroute_classify_log2(8192));

    out[NGX_HTTP_LLMROUTE_F_WORDS] = ngx_http_llmroute_classify_ramp(
        ngx_http_llmroute_classify_log2((double) sc.words + 1),
        ngx_http_llmroute_classify_log2(16),
        ngx_http_llmroute_classify_log2(256));

    out[NGX_HTTP_LLMROUTE_F_STEPS] = ngx_http_llmroute_classify_ramp(
        (double) (sc.items + sc.questions), 1, 9);

    out[NGX_HTTP_LLMROUTE_F_CODE] = ngx_http_llmroute_classify_ramp(
        ngx_http_llmroute_classify_log2((double) sc.code + 1),
        ngx_http_llmroute_classify_log2(256),
        ngx_http_llmroute_classify_log2(16384));

    out[NGX_HTTP_LLMROUTE_F_REASONING] = ngx_http_llmroute_classify_ramp(
        (double) sc.hits[NGX_HTTP_LLMROUTE_KW_HARD], 0, 3);

    out[NGX_HTTP_LLMROUTE_F_TASK] = ngx_http_llmroute_classify_ramp(
        (double) sc.hits[NGX_HTTP_LLMROUTE_KW_TASK], 0, 2);

    out[NGX_HTTP_LLMROUTE_F_MECHANICAL] = ngx_http_llmroute_classify_ramp(
        (double) sc.hits[NGX_HTTP_LLMROUTE_KW_MECH], 0, 2);

    out[NGX_HTTP_LLMROUTE_F_EASY] = ngx_http_llmroute_classify_ramp(
        (double) sc.hits[NGX_HTTP_LLMROUTE_KW_EASY], 0, 2);

    out[NGX_HTTP_LLMROUTE_F_TURNS] = ngx_http_llmroute_classify_ramp(
        (double) users, 1, 4);

    out[NGX_HTTP_LLMROUTE_F_TOOLS] = ngx_http_llmroute_classify_ramp(
        (double) (results + calls), 0, 8);

    /* a small max_tokens is a strong hint, so the output scale is -1..1 */

    out[NGX_HTTP_LLMROUTE_F_OUTPUT] = req->max_tokens < 0 ? 0
        : 2 * ngx_http_llmroute_classify_ramp(
                  ngx_http_llmroute_classify_log2(
                      (double) req->max_tokens + 1),
                  ngx_http_llmroute_classify_log2(64),
                  ngx_http_llmroute_classify_log2(8192))
          - 1;

    out[NGX_HTTP_LLMROUTE_F_JSON] = req->json_schema ? 1
                                  : req->json_mode ? 0.5 : 0;

    if (out == v) {
        for (i = 0; i < n; i++) {
            f[i] = v[i];
        }
    }

    return NGX_HTTP_LLMROUTE_NFEATURES;
}


/*
 * one message's content: a string is text; an array of content parts has
 * its text parts scanned, in order, while the head window lasts (images,
 * tool calls and tool results are skipped whole, never read word by word)
 */

static void
ngx_http_llmroute_classify_message(ngx_http_llmroute_scan_t *sc, u_char *p,
    u_char *last, ngx_uint_t parts, size_t head, size_t tail)
{
    size_t   len;
    u_char  *s, *e;

    if (!parts) {
        ngx_http_llmroute_classify_prose(sc, p, last, head, tail);
        return;
    }

    head += tail;

    while (head) {
        s = ngx_http_llmroute_ask_part(&p, last, &e);
        if (s == NULL) {
            return;
        }

        len = ngx_min((size_t) (e - s), head);
        ngx_http_llmroute_classify_prose(sc, s, e, len, 0);
        head -= len;
    }
}


/*
 * the user's own words in a text: the blocks an agent injects at the start
 * of a line (<system-reminder>, <environment_details>) are skipped whole
 */

static void
ngx_http_llmroute_classify_prose(ngx_http_llmroute_scan_t *sc, u_char *p,
    u_char *last, size_t head, size_t tail)
{
    size_t   len;
    u_char  *b, *e;

    for ( ;; ) {
        b = ngx_http_llmroute_ask_block(p, last, &e);

        if (b == last) {
            ngx_http_llmroute_classify_text(sc, p, last, head, tail);
            return;
        }

        len = ngx_min((size_t) (b - p), head);
        ngx_http_llmroute_classify_text(sc, p, b, len, 0);
        head -= len;
        p = e;
    }
}


/* one text: the whole of a short one, head and tail of a long one */

static void
ngx_http_llmroute_classify_text(ngx_http_llmroute_scan_t *sc, u_char *p,
    u_char *last, size_t head, size_t tail)
{
    size_t  code, prose;

    sc->in_code = 0;

    if ((size_t) (last - p) <= head + tail) {
        ngx_http_llmroute_classify_scan(sc, p, last);
        return;
    }

    code = sc->code;

    ngx_http_llmroute_classify_scan(sc, p, p + head);

    if (tail == 0) {
        return;
    }

    /* the middle: fenced code exactly, the rest as code as the head was */

    code = sc->code - code;
    prose = ngx_http_llmroute_classify_fences(sc, p + head, last - tail);

    if (sc->count) {
        sc->code += (size_t) ((double) prose * code / head);
    }

    ngx_http_llmroute_classify_scan(sc, last - tail, last);
}


/*
 * the word scan: p..last are raw JSON string bytes (or the raw array of
 * content parts); backslash escapes and non-ASCII bytes separate words
 */

static void
ngx_http_llmroute_classify_scan(ngx_http_llmroute_scan_t *sc, u_char *p,
    u_char *last)
{
    u_char                        c, lc, *q, *guard;
    size_t                        n, marks, words, alnum;
    uint64_t                      h, prev, bit, v;
    ngx_uint_t                    k, bol, tick, pair, inert;
    ngx_http_llmroute_kw_bits_t  *bits;

    /*
     * the cursor and the counts of the line's words and letters live in
     * locals (the counts are stored for eol()): through the calls made per
     * word and per line the compiler would otherwise reload them for every
     * byte.  The loop below reads one line's prose; the starts of lines
     * and fenced code are handled apart, so it tests for neither per byte
     */

    tick = 0;
    pair = 0;
    prev = 0;
    words = 0;
    alnum = 0;

    /*
     * the last byte that is no letter: a word that starts before it ends
     * at it at the latest, so its letters are read without a test of last
     */

    for (guard = last; guard > p && ngx_http_llmroute_kw_lc[guard[-1]];
         guard--)
    {
        /* void */
    }

    guard = (guard > p) ? guard - 1 : p;

    ngx_http_llmroute_classify_bol(sc, p);

    if (sc->in_code) {
        goto code;
    }

line:

    /* at the start of a line, and after an escape right there */

    p = ngx_http_llmroute_classify_indent(sc, p, last);
    bol = (p < last && *p == '\\');

    while (p < last) {

        c = *p;

        /*
         * pairs are joined by spaces, "-", "_", "/" and tabs only; a single
         * space and the byte after it are read in one step
         */

        if (c == ' ') {
            if (++p == last) {
                break;
            }

            c = *p;

            if (c == ' ') {
                continue;
            }
        }

        if (ngx_http_llmroute_kw_lc[c]) {

            /*
             * a word: its letters are found first and hashed only when it
             * may be a keyword; "don't" and "don\u2019t" are "dont"
             */

        word:

            q = p;
            marks = 0;
            p = ngx_http_llmroute_classify_letters(p + 1, last, guard);

            if (p < last && *p != ' ' && (*p == '\'' || *p == '\\')) {

                /*
                 * four letters before the first apostrophe are the word's
                 * first four: "yesterday's" is filtered by "yest", as
                 * "yesterdays" would be, not stemmed and hashed
                 */

                inert = (p - q > 3 && !ngx_http_llmroute_kw_start(q));

                while (p < last
                       && (k = ngx_http_llmroute_classify_mark(p, last)))
                {
                    p += k + 1;
                    marks += k;
                    p = ngx_http_llmroute_classify_letters(p, last, guard);
                }

                if (inert && marks) {
                    if (!tick) {
                        words++;
                        alnum += (p - q) - marks;
                    }

                    pair = 0;
                    goto next;
                }
            }

            if (tick) {
                pair = 0;
                goto next;
            }

            n = (p - q) - marks;

            words++;
            alnum += n;

            if (n > 3) {

                /* q + 4 <= p: no apostrophe was skipped in the start */

                if (marks == 0 && !ngx_http_llmroute_kw_start(q)) {
                    pair = 0;
                    goto next;
                }

                h = ngx_http_llmroute_classify_stem(q, p, n, marks, sc->line,
                                                    last);

                /* "base64," starts a data URL: no words in there */

                if (n == 6 && p < last && *p == ','
                    && ngx_http_llmroute_equal_lc(p - 6, "base64", 6))
                {
                    q = memchr(p, '"', last - p);
                    p = q ? q : last;
                }

            } else if (marks == 0) {

                /* most words of 3 letters or fewer: hashed here, if at all */

                if (!pair) {
                    k = ngx_http_llmroute_kw_code[p[-1]];
                    k += (n > 1) ? 37 * ngx_http_llmroute_kw_code[p[-2]]
                                   + ((n > 2) ? 37 * 37
                                        * ngx_http_llmroute_kw_code[p[-3]]
                                                : 0)
                                 : 0;

                    if (ngx_http_llmroute_kw_inert[k / 64]
                        & ((uint64_t) 1 << (k % 64)))
                    {
                        goto next;
                    }
                }

                v = p[-1] | 0x20;
                v |= (n > 1) ? (uint64_t) (p[-2] | 0x20) << 8 : 0;
                v |= (n > 2) ? (uint64_t) (p[-3] | 0x20) << 16 : 0;

                h = NGX_HTTP_LLMROUTE_HASH_SEED ^ n;
                ngx_http_llmroute_hash_step(h, v);
                h = ngx_http_llmroute_hash_end(h);

            } else {
                h = ngx_http_llmroute_classify_letters_hash(q, n, marks);
            }

            bits = &ngx_http_llmroute_kw_bits[(h >> 52) & 63];
            bit = (uint64_t) 1 << ((h >> 46) & 63);

            if (bits->words & bit) {
                ngx_http_llmroute_classify_lookup(sc, h);
            }

            if (pair) {
                ngx_http_llmroute_classify_lookup(sc,
                    (prev * NGX_HTTP_LLMROUTE_PAIR_MIX) ^ h);
            }

            prev = h;
            pair = (bits->firsts & bit) != 0;
            /* fall through */

        next:

            /* a word, a space and a word: straight to the next one */

            if (p < guard && *p == ' ' && ngx_http_llmroute_kw_lc[p[1]]) {
                p++;
                goto word;
            }

            continue;
        }

        switch (c) {

        case '-':
        case '_':
        case '/':
            p++;
            continue;

        case '\\':
            if (p + 1 == last) {
                p++;
                continue;
            }

            switch (p[1]) {

            case 'n':
                if (p == sc->line) {

                    /*
                     * an empty line: nothing was read on it, so nothing is
                     * counted and nothing needs resetting
                     */

                    p += 2;
                    sc->line = p;
                    goto line;
                }

                sc->line_words = words;
                sc->line_alnum = alnum;
                ngx_http_llmroute_classify_eol(sc, p);

                /* eol() reset the line's counts: what bol() does besides */

                p += 2;
                sc->line = p;
                sc->code_line = 0;
                words = 0;
                alnum = 0;
                tick = 0;
                pair = 0;
                goto line;

            case 't':
                p += 2;

                if (bol) {
                    goto line;
                }

                continue;

            case 'u':
                /* an escaped CJK character is about a word of prose */

                lc = last - p >= 6 ? (p[2] | 0x20) : 0;

                if ((lc >= '3' && lc <= '9') || (lc >= 'a' && lc <= 'c')) {
                    words++;
                    alnum += 2;
                }

                p += ngx_min(6, last - p);
                break;

            case '"':
                sc->line_syms += !tick;
                p += 2;
                break;

            default:
                p += 2;
            }

            pair = 0;

            if (bol) {
                goto line;
            }

            continue;

        case '`':
            if (last - p >= 3 && p[1] == '`' && p[2] == '`') {
                sc->line_words = words;
                sc->line_alnum = alnum;
                ngx_http_llmroute_classify_eol(sc, p);
                words = 0;
                alnum = 0;
                pair = 0;
                p += 3;
                goto code;
            }

            /*
             * inline code is short and closed on its line: a backtick with
             * no partner soon after is a literal one, not the start of a
             * span that would hide the rest of the line
             */

            if (tick || ngx_http_llmroute_classify_tick_closes(p + 1, last)) {
                tick = !tick;
            }

            break;

        case '?':
            sc->line_questions += !tick;
            break;

        case ',':
            sc->line_commas += !tick;
            break;

        case '(':
            if (!tick && last - p >= 3
                && p[1] >= '1' && p[1] <= '9' && p[2] == ')')
            {
                sc->line_items++;
            }

            /* fall through */

        case ')':
        case '{':
        case '}':
        case '[':
        case ']':
        case ';':
        case '=':
        case '<':
        case '>':
        case '|':
        case '"':
            sc->line_syms += !tick;
            break;

        default:

            /* a raw CJK character (UTF-8, 3 bytes) is about a word */

            if (c >= 0xe3 && c <= 0xed) {
                words++;
                alnum += 2;
                p += ngx_min(3, last - p);
                pair = 0;
                continue;
            }
        }

        pair = 0;
        p++;
    }

    sc->in_code = 0;
    sc->line_words = words;
    sc->line_alnum = alnum;
    ngx_http_llmroute_classify_eol(sc, last);

    return;

code:

    /* fenced code: measured up to the closing fence, not read */

    while (p < last) {
        q = memchr(p, '`', last - p);

        if (q == NULL) {
            break;
        }

        sc->code += sc->count ? (size_t) (q - p) : 0;
        p = q + 1;

        if (last - q >= 3 && q[1] == '`' && q[2] == '`') {
            tick = 0;
            pair = 0;
            p = q + 3;
            ngx_http_llmroute_classify_bol(sc, p);
            goto line;
        }
    }

    sc->code += sc->count ? (size_t) (last - p) : 0;
    sc->in_code = 1;
}


/*
 * past the letters and digits from p on; before guard, a byte that is no
 * letter, the loop needs no test of last
 */

static inline u_char *
ngx_http_llmroute_classify_letters(u_char *p, u_char *last, u_char *guard)
{
    if (p < guard) {

        /* two letters a step: p[1] is read only after a letter at p[0] */

        while (ngx_http_llmroute_kw_lc[p[0]] && ngx_http_llmroute_kw_lc[p[1]])
        {
            p += 2;
        }

        return p + (ngx_http_llmroute_kw_lc[*p] != 0);
    }

    while (p < last && ngx_http_llmroute_kw_lc[*p]) {
        p++;
    }

    return p;
}


/* a closing backtick within NGX_HTTP_LLMROUTE_TICK_MAX bytes, same line */

#define NGX_HTTP_LLMROUTE_TICK_MAX  160

static ngx_uint_t
ngx_http_llmroute_classify_tick_closes(u_char *p, u_char *last)
{
    if (last - p > NGX_HTTP_LLMROUTE_TICK_MAX) {
        last = p + NGX_HTTP_LLMROUTE_TICK_MAX;
    }

    for ( /* void */ ; p < last; p++) {
        if (*p == '`') {
            return 1;
        }

        if (*p == '\\' && p + 1 < last && p[1] == 'n') {
            return 0;
        }
    }

    return 0;
}


static void
ngx_http_llmroute_classify_bol(ngx_http_llmroute_scan_t *sc, u_char *p)
{
    sc->line = p;
    sc->line_words = 0;
    sc->line_alnum = 0;
    sc->line_syms = 0;
    sc->line_items = 0;
    sc->line_questions = 0;
    sc->line_commas = 0;
    sc->npending = 0;
    sc->code_line = 0;
}


/*
 * the start of a line: "1. ", "2) ", "- ", "* " are list items; an
 * indented line (not an item) or a diff line is code pasted without fences
 */

static u_char *
ngx_http_llmroute_classify_indent(ngx_http_llmroute_scan_t *sc, u_char *p,
    u_char *last)
{
    u_char      *q;
    ngx_uint_t   n;

    for (n = 0; p < last; n++) {
        if (*p == ' ') {
            p++;

        } else if (*p == '\\' && last - p >= 2 && p[1] == 't') {
            p += 2;
            n += 3;

        } else {
            break;
        }
    }

    if (p == last || *p == '\\') {
        return p;   /* decided on the next character */
    }

    if ((*p == '-' || *p == '*') && last - p >= 2 && p[1] == ' ') {
        sc->line_items = 1;
        return p;
    }

    for (q = p; q < last && q - p < 3 && *q >= '0' && *q <= '9'; q++) {
        /* void */
    }

    if (q > p && q - p < 3 && last - q >= 2
        && (*q == '.' || *q == ')') && q[1] == ' ')
    {
        sc->line_items = 1;
        return p;
    }

    if (n >= 2 || *p == '+' || *p == '-' || *p == '@') {
        sc->code_line = 1;
    }

    return p;
}


/*
 * the end of a line: prose adds its words, items and questions; a line
 * dense with code punctuation is code pasted without fences, and the
 * keywords it hit are taken back (an identifier is not a request)
 */

static void
ngx_http_llmroute_classify_eol(ngx_http_llmroute_scan_t *sc, u_char *p)
{
    u_char      *q;
    ngx_uint_t   i, kw;

    /* statements end in ";", "{" or "}", sentences do not */

    for (q = p; q > sc->line; q--) {
        if (q[-1] == ' ') {
            continue;
        }

        if (q - sc->line >= 2 && q[-2] == '\\'
            && (q[-1] == 'r' || q[-1] == 't'))
        {
            q--;
            continue;
        }

        if (q[-1] == ';' || q[-1] == '{' || q[-1] == '}') {
            sc->code_line = 1;
        }

        break;
    }

    /* a line dense with commas is data (CSV), measured like code */

    if (sc->code_line || sc->line_syms * 8 > sc->line_alnum
        || sc->line_commas * 6 > sc->line_alnum)
    {

        for (i = 0; i < sc->npending; i++) {
            kw = sc->pending[i];
            sc->seen[kw / 64] &= ~((uint64_t) 1 << (kw % 64));
            sc->hits[ngx_http_llmroute_keywords[kw].cls]--;
        }

        if (sc->count) {
            sc->code += p - sc->line;
        }

    } else if (sc->count) {
        sc->words += sc->line_words;
        sc->items += sc->line_items;
        sc->questions += sc->line_questions;
    }

    sc->npending = 0;
    sc->line_words = 0;
    sc->line_alnum = 0;
    sc->line_syms = 0;
    sc->line_items = 0;
    sc->line_questions = 0;
    sc->line_commas = 0;
    sc->line = p;
}


/* the skipped middle of a long message: only fences, to keep code exact */

static size_t
ngx_http_llmroute_classify_fences(ngx_http_llmroute_scan_t *sc, u_char *p,
    u_char *last)
{
    u_char  *q;
    size_t   out;

    out = 0;

    while (p < last) {
        q = memchr(p, '`', last - p);

        if (q == NULL) {
            q = last;
        }

        if (!sc->in_code) {
            out += q - p;

        } else if (sc->count) {
            sc->code += q - p;
        }

        if (q == last) {
            return out;
        }

        if (last - q >= 3 && q[1] == '`' && q[2] == '`') {
            sc->in_code = !sc->in_code;
            p = q + 3;
            continue;
        }

        p = q + 1;
    }

    return out;
}


/* the keyword a key is, + 1; 0: none */

static ngx_uint_t
ngx_http_llmroute_classify_key(uint64_t key)
{
    ngx_uint_t  i;

    i = (key ^ (key >> 29)) & (NGX_HTTP_LLMROUTE_KW_SLOTS - 1);

    while (ngx_http_llmroute_kw_table[i].kw) {

        if (ngx_http_llmroute_kw_table[i].key == key) {
            return ngx_http_llmroute_kw_table[i].kw;
        }

        i = (i + 1) & (NGX_HTTP_LLMROUTE_KW_SLOTS - 1);
    }

    return 0;
}


static ngx_http_llmroute_inline void
ngx_http_llmroute_classify_lookup(ngx_http_llmroute_scan_t *sc, uint64_t key)
{
    ngx_uint_t  kw;

    kw = ngx_http_llmroute_classify_key(key);

    if (kw-- == 0) {
        return;
    }

    /* distinct keywords: a word repeated is one piece of evidence */

    if (!(sc->seen[kw / 64] & ((uint64_t) 1 << (kw % 64)))) {
        sc->seen[kw / 64] |= (uint64_t) 1 << (kw % 64);
        sc->hits[ngx_http_llmroute_keywords[kw].cls]++;

        if (sc->npending < NGX_HTTP_LLMROUTE_KW_PENDING) {
            sc->pending[sc->npending++] = kw;
        }
    }
}


static void
ngx_http_llmroute_classify_build(void)
{
    u_char       *p, *sp;
    size_t        len;
    uint64_t      key, h;
    ngx_uint_t    i, c;

    if (ngx_http_llmroute_kw_ready) {
        return;
    }

    for (c = 0; c < 256; c++) {
        if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')) {
            ngx_http_llmroute_kw_lc[c] = (u_char) c;

        } else if (c >= 'A' && c <= 'Z') {
            ngx_http_llmroute_kw_lc[c] = (u_char) (c | 0x20);
        }
    }

    for (i = 0; ngx_http_llmroute_keywords[i].text; i++) {
        p = (u_char *) ngx_http_llmroute_keywords[i].text;
        len = ngx_strlen(p);
        sp = memchr(p, ' ', len);

        ngx_http_llmroute_classify_start(p, sp ? (size_t) (sp - p) : len);

        if (sp) {
            ngx_http_llmroute_classify_start(sp + 1, len - (sp + 1 - p));
        }

        if (sp == NULL) {
            key = ngx_http_llmroute_classify_hash(p, len);
            ngx_http_llmroute_classify_bit(key, 0);

        } else {
            h = ngx_http_llmroute_classify_hash(p, sp - p);
            ngx_http_llmroute_classify_bit(h, 1);

            key = (h * NGX_HTTP_LLMROUTE_PAIR_MIX)
                  ^ ngx_http_llmroute_classify_hash(sp + 1,
                                                     len - (sp + 1 - p));
        }

        ngx_http_llmroute_classify_insert(key, i);
    }

    /* a data URL's "base64," is found only in words that pass the starts */

    ngx_http_llmroute_classify_start((u_char *) "base", 4);

    ngx_http_llmroute_classify_short();

    ngx_http_llmroute_kw_ready = 1;
}


/* the words of 1 to 3 letters whose hash changes nothing: see kw_inert */

static void
ngx_http_llmroute_classify_short(void)
{
    u_char       w[3];
    uint64_t     h;
    ngx_uint_t   c, i, k, n, code[3];

    static const char  letters[] = "0123456789abcdefghijklmnopqrstuvwxyz";

    for (c = 0; letters[c]; c++) {
        ngx_http_llmroute_kw_code[(u_char) letters[c]] = (u_char) (c + 1);

        if (letters[c] >= 'a') {
            ngx_http_llmroute_kw_code[letters[c] & ~0x20] = (u_char) (c + 1);
        }
    }

    for (n = 1; n <= 3; n++) {
        code[0] = 1;
        code[1] = 1;
        code[2] = 1;

        for ( ;; ) {
            k = 0;

            for (i = 0; i < n; i++) {
                w[i] = (u_char) letters[code[i] - 1];
                k = k * 37 + code[i];
            }

            h = ngx_http_llmroute_classify_letters_hash(w, n, 0);

            if (!ngx_http_llmroute_classify_key(h)
                && !(ngx_http_llmroute_kw_bits[(h >> 52) & 63].firsts
                     & ((uint64_t) 1 << ((h >> 46) & 63))))
            {
                ngx_http_llmroute_kw_inert[k / 64] |= (uint64_t) 1 << (k % 64);
            }

            /* the next word of n letters */

            for (i = n; i-- > 0; /* void */ ) {
                if (++code[i] <= 36) {
                    break;
                }

                code[i] = 1;
            }

            if (i == (ngx_uint_t) -1) {
                break;
            }
        }
    }
}


static void
ngx_http_llmroute_classify_start(u_char *p, size_t len)
{
    u_char      w[8];
    size_t      i, n;
    uint32_t    bit;
    uint64_t    t;
    ngx_uint_t  c;

    static const char  letters[] = "0123456789abcdefghijklmnopqrstuvwxyz";

    /* the letters, lower case, and the last 8 of them for the stemmer */

    for (i = 0, n = 0, t = 0; i < len; i++) {
        if (ngx_http_llmroute_kw_lc[p[i]]) {
            if (n < 4) {
                w[n] = ngx_http_llmroute_kw_lc[p[i]];
            }

            t = (t << 8) | ngx_http_llmroute_kw_lc[p[i]];
            n++;
        }
    }

    /* a word of 3 letters, or stemmed to 3: "fix" is "fixes" too */

    if (n < 3) {
        return;
    }

    if (n == 3 || ngx_http_llmroute_classify_suffix(t, n) == 3) {

        for (c = 0; letters[c]; c++) {
            w[3] = (u_char) letters[c];
            bit = ngx_http_llmroute_classify_start4(w);
            ngx_http_llmroute_kw_starts[bit / 64] |= (uint64_t) 1
                                                     << (bit % 64);
        }

        return;
    }

    bit = ngx_http_llmroute_classify_start4(w);
    ngx_http_llmroute_kw_starts[bit / 64] |= (uint64_t) 1 << (bit % 64);
}


/*
 * the bit of a word's first four bytes, letters or digits: | 0x20 is their
 * lower case
 */

static ngx_http_llmroute_inline uint32_t
ngx_http_llmroute_classify_start4(u_char *p)
{
    uint32_t  w;

    ngx_memcpy(&w, p, sizeof(uint32_t));

    return ((w | 0x20202020) * 0x9e3779b1U)
           >> (32 - NGX_HTTP_LLMROUTE_KW_STARTS_LOG);
}


/* a keyword's bit, or a pair's first word's: as the scan tests them */

static void
ngx_http_llmroute_classify_bit(uint64_t h, ngx_uint_t first)
{
    uint64_t                      bit;
    ngx_http_llmroute_kw_bits_t  *bits;

    bits = &ngx_http_llmroute_kw_bits[(h >> 52) & 63];
    bit = (uint64_t) 1 << ((h >> 46) & 63);

    if (first) {
        bits->firsts |= bit;

    } else {
        bits->words |= bit;
    }
}


/* the hash the scan computes for one word of a keyword */

static uint64_t
ngx_http_llmroute_classify_hash(u_char *p, size_t len)
{
    size_t  i, n;

    for (i = 0, n = 0; i < len; i++) {
        n += (ngx_http_llmroute_kw_lc[p[i]] != 0);     /* "don't" */
    }

    return (n > 3) ? ngx_http_llmroute_classify_stem(p, p + len, n, len - n,
                                                     p, p + len)
                   : ngx_http_llmroute_classify_letters_hash(p, n, len - n);
}


/*
 * the length of what joins two parts of a word at p: an apostrophe or an
 * escaped right single quote ("\u2019") followed by a letter; 0: none
 */

static size_t
ngx_http_llmroute_classify_mark(u_char *p, u_char *last)
{
    if (*p == '\'' && p + 1 < last && ngx_http_llmroute_kw_lc[p[1]]) {
        return 1;
    }

    if (*p == '\\' && last - p > 6 && p[1] == 'u'
        && ngx_memcmp(p + 2, "2019", 4) == 0
        && ngx_http_llmroute_kw_lc[p[6]])
    {
        return 6;
    }

    return 0;
}


/*
 * the hash of the first n letters from p, lower case; marks: the word has
 * some ("'", "\u2019"), skipped
 */

static uint64_t
ngx_http_llmroute_classify_letters_hash(u_char *p, size_t n, size_t marks)
{
    u_char      lc;
    uint64_t    h, v;
    ngx_uint_t  k;

    if (marks == 0) {
        return ngx_http_llmroute_classify_hash_lc(p, n);
    }

    h = NGX_HTTP_LLMROUTE_HASH_SEED ^ n;
    v = 0;
    k = 0;

    while (n) {
        lc = ngx_http_llmroute_kw_lc[*p];

        if (lc == 0) {
            p += (*p == '\\') ? 6 : 1;
            continue;
        }

        v = (v << 8) | lc;
        p++;
        n--;

        if (++k == 8) {
            ngx_http_llmroute_hash_step(h, v);
            v = 0;
            k = 0;
        }
    }

    if (k) {
        ngx_http_llmroute_hash_step(h, v);
    }

    return ngx_http_llmroute_hash_end(h);
}


/* the hash of n letters and digits from p: 8 in one load */

static ngx_http_llmroute_inline uint64_t
ngx_http_llmroute_classify_hash_lc(u_char *p, size_t n)
{
    uint64_t  h, v;

    h = NGX_HTTP_LLMROUTE_HASH_SEED ^ n;

    for ( /* void */ ; n >= 8; n -= 8, p += 8) {
        v = ngx_http_llmroute_be64(p) | 0x2020202020202020ULL;
        ngx_http_llmroute_hash_step(h, v);
    }

    if (n) {
        for (v = 0; n; n--) {
            v = (v << 8) | (*p++ | 0x20);
        }

        ngx_http_llmroute_hash_step(h, v);
    }

    return ngx_http_llmroute_hash_end(h);
}


/*
 * the hash of the stem of the word p..last of n > 3 letters (and marks
 * bytes of marks): its last 8 letters give the stem's length, only that
 * prefix is hashed; the bytes from start up to end may be read
 */

static ngx_http_llmroute_inline uint64_t
ngx_http_llmroute_classify_stem(u_char *p, u_char *last, size_t n,
    size_t marks, u_char *start, u_char *end)
{
    u_char    lc;
    size_t    m;
    uint64_t  t, h;

    /* the last 8 letters, the last one in the low byte */

    if (marks == 0 && n >= 8) {
        t = ngx_http_llmroute_be64(last - 8) | 0x2020202020202020ULL;

    } else if (marks == 0 && end - p >= 8) {
        t = (ngx_http_llmroute_be64(p) | 0x2020202020202020ULL)
            >> (64 - 8 * n);

    } else if (marks == 0 && last - start >= 8) {

        /* a word at the text's end: the 8 bytes that end with it */

        t = (ngx_http_llmroute_be64(last - 8) | 0x2020202020202020ULL)
            & (((uint64_t) 1 << 8 * n) - 1);

    } else {
        for (t = 0; p < last; p++) {
            lc = ngx_http_llmroute_kw_lc[*p];

            if (lc) {
                t = (t << 8) | lc;

            } else if (*p == '\\') {
                p += 5;
            }
        }

        p = last - (n + marks);
    }

    if (n <= 8) {

        /* t is the whole word: its stem is t's first letters */

        m = ngx_http_llmroute_classify_suffix(t, n);
        t >>= 8 * (n - m);

        h = NGX_HTTP_LLMROUTE_HASH_SEED ^ m;
        ngx_http_llmroute_hash_step(h, t);

        return ngx_http_llmroute_hash_end(h);
    }

    n = ngx_http_llmroute_classify_suffix(t, n);

    return ngx_http_llmroute_classify_letters_hash(p, n, marks);
}


/* 8 bytes, the first one in the high bits whatever the byte order */

static inline uint64_t
ngx_http_llmroute_be64(u_char *p)
{
    return __builtin_bswap64(ngx_http_llmroute_le64(p));
}


/*
 * a light suffix stripper, so that "partitioned", "partitioning" and
 * "partitions" are one keyword: plural "s", then one of "ization" (to
 * "iz"), "ation" (to "at"), "ing", "ed", "ly", a doubled consonant left by
 * those ("debugging"), and a final "e" ("races", "raced", "race").  t:
 * the word's last 8 letters (the last in the low byte), n > 3 letters;
 * returns the length of the stem
 */

#define ngx_http_llmroute_suffix2(a, b)                                       \
    ((uint64_t) (a) << 8 | (uint64_t) (b))
#define ngx_http_llmroute_suffix3(a, b, c)                                    \
    (ngx_http_llmroute_suffix2(a, b) << 8 | (uint64_t) (c))
#define ngx_http_llmroute_suffix5(a, b, c, d, e)                              \
    (ngx_http_llmroute_suffix3(a, b, c) << 16 | ngx_http_llmroute_suffix2(d, e))

static ngx_http_llmroute_inline size_t
ngx_http_llmroute_classify_suffix(uint64_t t, size_t n)
{
    u_char      c1, c2;
    ngx_uint_t  doubled;

    doubled = 0;

    if ((t & 0xff) == 's' && (t & 0xff00) != ('s' << 8)) {
        n--;
        t >>= 8;
    }

    if (n > 4) {

        switch (t & 0xff) {

        case 'n':
            if (n > 8 && (t & 0xffffffffffffffULL)
                         == (ngx_http_llmroute_suffix2('i', 'z') << 40
                             | ngx_http_llmroute_suffix5('a', 't', 'i', 'o',
                                                         'n')))
            {
                n -= 5;
                t >>= 40;

            } else if (n > 6 && (t & 0xffffffffffULL)
                                == ngx_http_llmroute_suffix5('a', 't', 'i',
                                                             'o', 'n'))
            {
                n -= 3;
                t >>= 24;
            }

            break;

        case 'g':
            if (n > 5
                && (t & 0xffffff) == ngx_http_llmroute_suffix3('i', 'n', 'g'))
            {
                n -= 3;
                t >>= 24;
                doubled = 1;
            }

            break;

        case 'd':
            if ((t & 0xffff) == ngx_http_llmroute_suffix2('e', 'd')) {
                n -= 2;
                t >>= 16;
                doubled = 1;
            }

            break;

        case 'y':
            if ((t & 0xffff) == ngx_http_llmroute_suffix2('l', 'y')) {
                n -= 2;
                t >>= 16;
            }

            break;
        }
    }

    c1 = (u_char) t;
    c2 = (u_char) (t >> 8);

    if (doubled && n > 3 && c1 == c2 && c1 != 'l' && c1 != 's' && c1 != 'z')
    {
        n--;
        c1 = c2;
    }

    if (n > 3 && c1 == 'e') {
        n--;
    }

    return n;
}


static void
ngx_http_llmroute_classify_insert(uint64_t key, ngx_uint_t kw)
{
    ngx_uint_t  i;

    if (kw >= NGX_HTTP_LLMROUTE_KW_MAX) {
        return;
    }

    i = (key ^ (key >> 29)) & (NGX_HTTP_LLMROUTE_KW_SLOTS - 1);

    while (ngx_http_llmroute_kw_table[i].kw) {

        /* "proof" and "proofs": the first one listed is the keyword */

        if (ngx_http_llmroute_kw_table[i].key == key) {
            return;
        }

        i = (i + 1) & (NGX_HTTP_LLMROUTE_KW_SLOTS - 1);
    }

    ngx_http_llmroute_kw_table[i].key = key;
    ngx_http_llmroute_kw_table[i].kw = kw + 1;
}


/* appends a C string, truncated at last */

static u_char *
ngx_http_llmroute_classify_copy(u_char *p, u_char *last, const char *s)
{
    while (*s && p < last) {
        *p++ = (u_char) *s++;
    }

    return p;
}


/* appends v with two decimals ("-0.25") or none ("1830") */

static u_char *
ngx_http_llmroute_classify_number(u_char *p, u_char *last, double v,
    ngx_uint_t decimals)
{
    u_char      buf[32], *b;
    uint64_t    n;
    ngx_uint_t  neg;

    neg = v < 0;
    v = neg ? -v : v;
    v = ngx_min(v, 1e15);
    n = (uint64_t) (v * (decimals ? 100 : 1) + 0.5);
    neg = neg && n;

    b = buf + sizeof(buf);

    if (decimals) {
        *--b = (u_char) ('0' + n % 10);
        n /= 10;
        *--b = (u_char) ('0' + n % 10);
        n /= 10;
        *--b = '.';
    }

    do {
        *--b = (u_char) ('0' + n % 10);
        n /= 10;
    } while (n);

    if (neg) {
        *--b = '-';
    }

    while (b < buf + sizeof(buf) && p < last) {
        *p++ = *b++;
    }

    return p;
}


/* log2 without libm: exponent plus a linear mantissa, error < 0.09 */

static double
ngx_http_llmroute_classify_log2(double x)
{
    double    e;
    uint64_t  bits;

    if (x <= 1) {
        return 0;
    }

    /*
     * x = m * 2^e, 1 <= m < 2: the exponent and the mantissa of a normal
     * double, no loop (x > 1 here: finite and normal)
     */

    ngx_memcpy(&bits, &x, sizeof(double));
    e = (double) ((ngx_int_t) ((bits >> 52) & 0x7ff) - 1023);
    bits = (bits & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL;
    ngx_memcpy(&x, &bits, sizeof(double));

    return e + (x - 1);
}


static double
ngx_http_llmroute_classify_ramp(double x, double lo, double hi)
{
    if (x <= lo) {
        return 0;
    }

    if (x >= hi) {
        return 1;
    }

    return (x - lo) / (hi - lo);
}
