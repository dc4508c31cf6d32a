/* SPDX-License-Identifier: MIT */
/*
 * The mfushim wire format: the records a producer (the shim, a test producer,
 * mfu-synth) sends and a consumer (mfud, mfu report) reads, and the one codec
 * both sides use.  doc/wire-format.md is the normative description; this
 * header mirrors it.  The implementation lives in collector/wire/ and is
 * linked as a static library by every producer and consumer.
 *
 * Decoding treats every byte as hostile: every length, index and count is
 * checked, and errors are reported as the pinned codes of enum mfu_wire_error
 * (returned negated).  No function here allocates after its _new().
 */
#ifndef MFU_WIRE_H
#define MFU_WIRE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MFU_FRAME_MAGIC 0x77554d46u /* "FMUw" little-endian: bytes 'F' 'M' 'U' 'w' */
#define MFU_FRAME_VERSION 1
#define MFU_FRAME_HEADER_LEN 24
#define MFU_FRAME_FLAG_ZSTD 0x01u
#define MFU_FRAME_FLAGS_KNOWN MFU_FRAME_FLAG_ZSTD

/* Hard limits a reader enforces before allocating or decompressing. */
#define MFU_FRAME_RAW_MAX (4u << 20)
#define MFU_FRAME_PAYLOAD_MAX (MFU_FRAME_RAW_MAX + (MFU_FRAME_RAW_MAX >> 7) + 4096u)
#define MFU_STRING_MAX 65536u
#define MFU_STRING_ID_MAX (1u << 20)

/* Pinned: values never change meaning; new codes are appended. */
enum mfu_wire_error {
	MFU_WIRE_OK = 0,
	MFU_WIRE_E_TRUNCATED = 1,       /* input ends inside a frame or record */
	MFU_WIRE_E_MAGIC = 2,           /* frame does not start with the magic */
	MFU_WIRE_E_VERSION = 3,         /* frame version this reader does not know */
	MFU_WIRE_E_FLAGS = 4,           /* reserved frame flag bits set */
	MFU_WIRE_E_HEADER_LEN = 5,      /* header_len smaller than 24 or past payload */
	MFU_WIRE_E_OVERSIZE = 6,        /* payload_len or raw_len over the limits */
	MFU_WIRE_E_CHECKSUM = 7,        /* CRC-32C mismatch */
	MFU_WIRE_E_ZSTD = 8,            /* zstd refused the payload */
	MFU_WIRE_E_INFLATE_LIMIT = 9,   /* payload decompresses past raw_len */
	MFU_WIRE_E_RAW_LEN = 10,        /* payload decompresses short of raw_len */
	MFU_WIRE_E_VARINT = 11,         /* varint longer than 10 bytes or over 64 bits */
	MFU_WIRE_E_RECORD_LEN = 12,     /* record body length past the payload */
	MFU_WIRE_E_FIELD = 13,          /* a field's value is out of its range */
	MFU_WIRE_E_NOMEM = 14,          /* a caller-provided buffer is too small */
	MFU_WIRE_E__COUNT
};

/* Returns a static, human-readable name for a (non-negated) error code. */
const char *mfu_wire_strerror(int code);

/* Dtype classes: what the peak table is keyed by.  Pinned. */
enum mfu_dtype_class {
	MFU_CLASS_NONE = 0, /* no FLOPs, or FLOPs of unknown dtype */
	MFU_CLASS_FP64 = 1,
	MFU_CLASS_FP32 = 2, /* fp32 on CUDA cores */
	MFU_CLASS_TF32 = 3, /* fp32 inputs on tensor cores (TF32 math) */
	MFU_CLASS_FP16 = 4,
	MFU_CLASS_BF16 = 5,
	MFU_CLASS_FP8 = 6,
	MFU_CLASS_INT8 = 7,
	MFU_CLASS_COUNT = 8
};

/* Returns "fp64", "bf16", ... or "none"; never NULL. */
const char *mfu_class_name(unsigned cls);

/* Record types.  Pinned; a reader skips types it does not know. */
enum mfu_record_type {
	MFU_REC_HELLO = 1,
	MFU_REC_STRING = 2,
	MFU_REC_KERNEL = 3,
	MFU_REC_GEMM = 4,
	MFU_REC_STEP = 5,
	MFU_REC_API = 6,
	MFU_REC_STATUS = 7,
	MFU_REC_GOODBYE = 8,
	MFU_REC_DEVICE = 9,
	MFU_REC_COPY = 10,
	MFU_REC_OFFCPU = 11,
};

/* Flag bits shared by kernel and gemm records (above the 4 class bits). */
#define MFU_KF_REMAT 0x0010u    /* inside mfu_remat_push/pop: hardware, never model */
#define MFU_KF_DECLARED 0x0020u /* FLOPs declared by a user region, not computed */
#define MFU_KF_GEMM 0x0040u     /* launched by an intercepted cuBLAS/cuBLASLt call */
#define MFU_KF_GRAPH 0x0080u    /* launched by a CUDA graph replay */
#define MFU_KF_UNTIMED 0x0100u  /* gemm only: no kernel record will carry these FLOPs */
#define MFU_KF_NESTED 0x0200u   /* gemm only: forwarded inside another counted call */
#define MFU_KF_ORPHAN 0x0400u   /* gemm only: FLOPs of launches whose kernel records never
				 * came; hardware FLOPs, not a call */
#define MFU_KF_KNOWN 0x07f0u

/* Hello flags. */
#define MFU_HELLO_DEGRADED 0x1u  /* no kernel timing (CUPTI unavailable) */
#define MFU_HELLO_SYNTHETIC 0x2u /* generated data, not a real run */

/* Status: why records were lost.  Counters are cumulative per source. */
enum mfu_drop_reason {
	MFU_DROP_BUFFER_FULL = 0,  /* producer buffers full */
	MFU_DROP_DISCONNECTED = 1, /* collector unreachable */
	MFU_DROP_CUPTI = 2,        /* CUPTI's own dropped-record count */
	MFU_DROP_ENCODE = 3,       /* a record could not be encoded */
	MFU_DROP_SPOOL_FULL = 4,   /* collector away or slow and the spool file full */
	MFU_DROP__COUNT = 5
};

#define MFU_STATUS_DEGRADED 0x1u /* kernel timing currently unavailable */

struct mfu_device_info {
	uint32_t index;
	uint32_t sm_count;
	uint32_t sm_clock_khz;
	uint32_t mem_clock_khz;
	uint32_t cc_major;
	uint32_t cc_minor;
	const char *name; /* not owned; for a decoded record, points into the payload */
	uint32_t name_len;
};

struct mfu_rec_hello {
	uint64_t time_ns;
	uint64_t pid;
	int64_t rank, local_rank; /* -1: unknown */
	uint64_t world_size;      /* 0: unknown */
	uint64_t flags;           /* MFU_HELLO_* */
	const char *host, *job, *producer;
	uint32_t host_len, job_len, producer_len;
	uint32_t has_device;
	struct mfu_device_info device;
	/* Shared secret for TCP collectors (appended field; a hello without it
	 * decodes with token_len 0).  Never logged. */
	const char *token;
	uint32_t token_len;
};

struct mfu_rec_string {
	uint64_t id; /* 1..MFU_STRING_ID_MAX; 0 means "no name" elsewhere */
	const char *text;
	uint32_t len;
};

struct mfu_rec_kernel {
	uint64_t start_ns, end_ns;
	uint64_t device, stream, name_id;
	uint64_t corr;  /* CUPTI correlation id */
	uint64_t call;  /* id of the gemm call that launched it, 0 if none */
	uint64_t flags; /* class in bits 0-3, MFU_KF_* above */
	uint64_t flops;
};

struct mfu_rec_gemm {
	uint64_t start_ns, end_ns; /* host API call */
	uint64_t tid, device;
	uint64_t api; /* enum mfu_gemm_api, defined with the shim */
	uint64_t m, n, k, batch;
	uint64_t a_type, b_type, c_type, compute_type; /* cudaDataType / cublasComputeType_t */
	uint64_t ops;   /* transa | transb << 2 */
	uint64_t flags; /* class in bits 0-3, MFU_KF_* above */
	uint64_t flops;
	uint64_t call;
};

struct mfu_rec_step {
	uint64_t begin_ns, end_ns;
	uint64_t index, device;
	uint64_t model_flops;
	uint64_t model_class; /* dtype class the model's math runs in, 0 if not declared */
};

/* What a driver API call means to gap analysis. */
enum mfu_api_kind {
	MFU_API_LAUNCH = 1,    /* a kernel or graph launch */
	MFU_API_SYNC = 2,      /* stream, event or context synchronize: the host waits */
	MFU_API_BLOCKING = 3,  /* a blocking memcpy or memset: the host waits */
	MFU_API__COUNT
};

struct mfu_rec_api {
	uint64_t start_ns, end_ns;
	uint64_t tid, cbid, corr;
	uint64_t kind; /* enum mfu_api_kind; a body without it decodes as MFU_API_LAUNCH */
};

/* A memcpy or memset executing on a device: the GPU is busy, not idle. */
enum mfu_copy_op {
	MFU_COPY_MEMCPY = 1,
	MFU_COPY_MEMSET = 2,
};

struct mfu_rec_copy {
	uint64_t start_ns, end_ns;
	uint64_t device, stream;
	uint64_t op;   /* enum mfu_copy_op */
	uint64_t kind; /* memcpy: CUpti_ActivityMemcpyKind (1 HtoD, 2 DtoH, 8 DtoD, ...); memset: 0 */
	uint64_t bytes;
	uint64_t corr; /* CUPTI correlation id of the API call that issued it */
};

/* Why a thread was off the CPU, from the state it left in (sched_switch). */
enum mfu_offcpu_state {
	MFU_OFFCPU_RUNNABLE = 0, /* preempted: it wanted to run */
	MFU_OFFCPU_SLEEPING = 1, /* blocked, interruptible (lock, poll, sleep, read) */
	MFU_OFFCPU_DISK = 2,     /* blocked, uninterruptible (I/O, page fault) */
	MFU_OFFCPU_OTHER = 3,
	MFU_OFFCPU__COUNT = 4
};

/* An interval a thread of the source spent off-CPU.  Written by the
 * collector's scheduler tracer (into archives), never by the shim. */
struct mfu_rec_offcpu {
	uint64_t start_ns, end_ns;
	uint64_t tid;
	uint64_t state;    /* enum mfu_offcpu_state */
	uint64_t stack_id; /* kernel stack id + 1; 0: none */
};

struct mfu_rec_status {
	uint64_t time_ns;
	uint64_t flags; /* MFU_STATUS_* */
	uint64_t dropped[MFU_DROP__COUNT];
};

struct mfu_rec_goodbye {
	uint64_t time_ns;
	int64_t exit_code;
};

struct mfu_record {
	uint32_t type; /* enum mfu_record_type; decoder also yields unknown types */
	union {
		struct mfu_rec_hello hello;
		struct mfu_rec_string string;
		struct mfu_rec_kernel kernel;
		struct mfu_rec_gemm gemm;
		struct mfu_rec_step step;
		struct mfu_rec_api api;
		struct mfu_rec_copy copy;
		struct mfu_rec_offcpu offcpu;
		struct mfu_rec_status status;
		struct mfu_rec_goodbye goodbye;
		struct mfu_device_info device;
	} u;
};

/* ---- Encoding: records into a raw (uncompressed) payload ---- */

/* Delta bases; reset at the start of every frame so frames decode alone. */
struct mfu_delta {
	uint64_t kernel_start, kernel_corr, gemm_start, gemm_call, api_start, api_corr;
};

struct mfu_enc {
	uint8_t *buf;
	size_t len, cap;
	uint32_t records;
	struct mfu_delta delta;
};

/* Starts a payload in buf[0..cap).  Not thread-safe per encoder. */
void mfu_enc_init(struct mfu_enc *e, uint8_t *buf, size_t cap);
/* Appends one record.  Returns 0, or -MFU_WIRE_E_NOMEM if it does not fit
 * (the encoder is left unchanged), or -MFU_WIRE_E_FIELD for a bad record. */
int mfu_enc_put(struct mfu_enc *e, const struct mfu_record *r);
/* Forgets the payload and the delta bases, keeping the buffer. */
void mfu_enc_reset(struct mfu_enc *e);

/* The largest encoding of any one record, strings excluded. */
#define MFU_RECORD_FIXED_MAX 256u

/* ---- Decoding a raw payload ---- */

struct mfu_dec {
	const uint8_t *p, *end;
	struct mfu_delta delta;
	int checked_only; /* tests: never take the unchecked fast path */
};

void mfu_dec_init(struct mfu_dec *d, const uint8_t *payload, size_t len);
/* Returns 1 and fills *r, 0 at the end of the payload, or a negated error.
 * Unknown record types are returned with only r->type set, so callers can
 * count them; their bodies are skipped.  Strings in *r point into the payload. */
int mfu_dec_next(struct mfu_dec *d, struct mfu_record *r);

/* ---- Frames ---- */

struct mfu_frame_header {
	uint32_t magic;
	uint8_t version, flags;
	uint16_t header_len;
	uint32_t payload_len, raw_len, seq, crc;
};

/* Parses and validates a header.  Returns 0 when buf[0..len) holds a whole
 * valid header (the payload may still be missing), -MFU_WIRE_E_TRUNCATED when
 * fewer than MFU_FRAME_HEADER_LEN bytes are there, or another negated error. */
int mfu_frame_header_parse(const uint8_t *buf, size_t len, struct mfu_frame_header *h);

/* Total bytes of the frame described by h. */
static inline size_t mfu_frame_size(const struct mfu_frame_header *h)
{
	return (size_t)h->header_len + h->payload_len;
}

struct mfu_codec; /* zstd contexts and scratch; one per thread */

struct mfu_codec *mfu_codec_new(int level);
void mfu_codec_free(struct mfu_codec *c);

/* Compresses raw[0..raw_len) into one frame at out[0..cap).  *out_len gets
 * the frame size.  Returns 0 or a negated error (-MFU_WIRE_E_NOMEM if cap is
 * under mfu_frame_bound(raw_len)). */
int mfu_frame_seal(struct mfu_codec *c, const uint8_t *raw, size_t raw_len, uint32_t seq,
		   uint8_t *out, size_t cap, size_t *out_len);
size_t mfu_frame_bound(size_t raw_len);

/* Checks a whole frame (header, CRC) and decompresses its payload into the
 * codec's scratch.  On 0, *raw points at raw_len bytes valid until the next
 * call on this codec. */
int mfu_frame_open(struct mfu_codec *c, const uint8_t *frame, size_t len,
		   struct mfu_frame_header *h, const uint8_t **raw, size_t *raw_len);

/* Rewrites the sequence number of a sealed frame (and its CRC).  Senders
 * number frames when they send them, not when they seal them. */
void mfu_frame_set_seq(uint8_t *frame, size_t len, uint32_t seq);

uint32_t mfu_crc32c(uint32_t crc, const void *buf, size_t len);

/* ---- Acknowledgements (collector to producer, same connection) ---- */

#define MFU_ACK_MAGIC 0x61554d46u /* bytes 'F' 'M' 'U' 'a' */
#define MFU_ACK_LEN 12u
#define MFU_ACK_F_SEQ 0x01u /* next_seq is valid: frames before it are committed */

/* Writes one ack: have_seq says whether next_seq means anything yet (a
 * source whose first data frame has not arrived acks with have_seq 0).
 * Thread-safe, async-signal-safe (no state). */
void mfu_ack_encode(uint8_t out[MFU_ACK_LEN], int have_seq, uint32_t next_seq);
/* Parses one ack.  Returns 0, or -MFU_WIRE_E_MAGIC / -MFU_WIRE_E_VERSION /
 * -MFU_WIRE_E_FLAGS for bytes that are no ack this reader knows.
 * Thread-safe, async-signal-safe. */
int mfu_ack_parse(const uint8_t in[MFU_ACK_LEN], int *have_seq, uint32_t *next_seq);

#ifdef __cplusplus
}
#endif
#endif
