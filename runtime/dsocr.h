/* dsocr: DeepSeek-OCR inference, the C API (installed as include/dsocr.h, libdsocr.so).
 *
 *   dsocr_options opt;
 *   dsocr_options_default(&opt);
 *   opt.model_dir = "models/DeepSeek-OCR";
 *   dsocr_engine* engine;
 *   if (dsocr_open(&opt, &engine) != DSOCR_OK) { fprintf(stderr, "%s\n", dsocr_last_error()); }
 *   dsocr_result* r;
 *   if (dsocr_run(engine, "page.png", NULL, NULL, NULL, NULL, &r) == DSOCR_OK) {
 *     puts(r->markdown);
 *     dsocr_result_free(r);
 *   }
 *   dsocr_close(engine);
 *
 * Rules:
 *  - Every function returns a dsocr_status (or nothing); none aborts or lets a C++ exception out.
 *    After a failure, dsocr_last_error() is a one-line message naming the option, file or limit
 *    at fault and what to do; it is per thread and is "" after a call that succeeded.
 *  - Option and parameter structs start with struct_size: fill them with dsocr_options_default /
 *    dsocr_run_params_default, which set it, then change fields. Later versions only append
 *    fields, so a program built against an older header keeps working.
 *  - An engine runs one page at a time: do not call dsocr_run on the same engine from two
 *    threads at once. Different engines are independent.
 *  - Strings are UTF-8. Results are owned by the caller and freed with dsocr_result_free.
 *
 * The backend in this version is the CPU float32 reference (device "cpu"); device "cuda" is
 * refused with DSOCR_E_UNSUPPORTED until GPU generation lands. */
#ifndef DSOCR_H_
#define DSOCR_H_

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define DSOCR_API
#else
#define DSOCR_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define DSOCR_VERSION_MAJOR 0
#define DSOCR_VERSION_MINOR 1
#define DSOCR_VERSION_PATCH 0

typedef enum dsocr_status {
  DSOCR_OK = 0,
  DSOCR_E_INVALID = 1,     /* a bad argument, option, prompt or parameter */
  DSOCR_E_IO = 2,          /* a file or directory is missing or unreadable */
  DSOCR_E_MODEL = 3,       /* the checkpoint or tokenizer is invalid or not DeepSeek-OCR */
  DSOCR_E_IMAGE = 4,       /* the image cannot be decoded, or is too large */
  DSOCR_E_CUDA = 5,        /* a CUDA error (no GPU, driver, launch) */
  DSOCR_E_OOM = 6,         /* out of host or GPU memory */
  DSOCR_E_UNSUPPORTED = 7, /* valid, but not supported by this build (see the message) */
  DSOCR_E_INTERNAL = 8     /* a bug in dsocr: please report the message */
} dsocr_status;

/* Resolution modes (MODEL.md §5): global view side / tiles, image tokens. */
typedef enum dsocr_mode {
  DSOCR_MODE_TINY = 0,   /* 512, 73 image tokens */
  DSOCR_MODE_SMALL = 1,  /* 640, 111 */
  DSOCR_MODE_BASE = 2,   /* 1024, 273 */
  DSOCR_MODE_LARGE = 3,  /* 1280, 421 */
  DSOCR_MODE_GUNDAM = 4  /* 1024 global + 640 tiles (default) */
} dsocr_mode;

/* The official prompts, used when dsocr_run gets no prompt. */
typedef enum dsocr_task {
  DSOCR_TASK_MARKDOWN = 0, /* layout with grounding boxes (default) */
  DSOCR_TASK_OCR = 1,      /* plain text */
  DSOCR_TASK_FIGURE = 2,
  DSOCR_TASK_DESCRIBE = 3,
  DSOCR_TASK_LOCATE = 4 /* needs dsocr_run_params.ref */
} dsocr_task;

typedef struct dsocr_options {
  size_t struct_size;         /* sizeof(dsocr_options); set by dsocr_options_default */
  const char* model_dir;      /* checkpoint directory: config.json + *.safetensors (required) */
  const char* tokenizer_path; /* NULL: <model_dir>/tokenizer.json */
  const char* device;         /* "cuda" (default) or "cpu" */
  int gpu;                    /* CUDA device index (default 0) */
  uint64_t gpu_mem;           /* GPU memory budget in bytes; 0: all free memory. Below the
                                  all-resident plan the embedding table and routed experts live
                                  in pinned host memory (same output); below the minimum
                                  (dsocr-run --inspect) dsocr_open fails with DSOCR_E_OOM */
  int mode;                   /* dsocr_mode (default DSOCR_MODE_GUNDAM) */
  int max_crops;              /* Gundam: at most this many tiles, 2..9 (default 9) */
  int max_tokens;             /* most new tokens per page; 0: fill the 8192-token context */
  int ngram;                  /* no-repeat n-gram size, HF semantics (default 20; 0: off) */
  const char* quant;          /* weight precision policy; only "bf16" (the default) for now */
} dsocr_options;

typedef struct dsocr_run_params {
  size_t struct_size; /* sizeof(dsocr_run_params); set by dsocr_run_params_default */
  int task;           /* dsocr_task, used when the prompt is NULL (default markdown) */
  const char* ref;    /* the phrase to find with DSOCR_TASK_LOCATE */
  int max_tokens;     /* > 0: overrides dsocr_options.max_tokens for this page */
} dsocr_run_params;

typedef struct dsocr_box {
  int x1, y1, x2, y2; /* pixels of the original image (after EXIF orientation) */
} dsocr_box;

/* One grounding match <|ref|>label<|/ref|><|det|>[[x1,y1,x2,y2],...]<|/det|> and its text. */
typedef struct dsocr_block {
  const char* label;       /* e.g. "text", "title", "image", "table" */
  const char* text;        /* the text the model wrote for this region */
  int n_boxes;             /* 0 when the coordinates did not parse */
  const dsocr_box* boxes;
} dsocr_block;

typedef struct dsocr_result {
  size_t struct_size;    /* sizeof(dsocr_result) of the library that made it */
  const char* text;      /* the decoded output, special tokens kept (raw) */
  const char* markdown;  /* the official .mmd: grounding tags removed, figures -> images/<i>.jpg */
  const char* plain;     /* plain text: grounding removed, labels and figures dropped */
  int n_blocks;
  const dsocr_block* blocks;
  int prompt_tokens;     /* the whole prompt: BOS, text and image tokens */
  int image_tokens;
  int generated_tokens;  /* including the EOS token when one was emitted */
  int eos;               /* 1: generation ended with EOS; 0: token limit or stopped */
  int stopped;           /* 1: the token callback asked to stop */
  int page_width;        /* the image after EXIF orientation, pixels */
  int page_height;
  double ms_preprocess, ms_vision, ms_prefill, ms_decode; /* stage timings, milliseconds */
} dsocr_result;

typedef struct dsocr_engine dsocr_engine;

/* Called with each piece of generated text as it is decoded: `piece` is `len` bytes of whole
 * UTF-8 characters (never half of one), NUL-terminated. Return 0 to go on, non-zero to stop
 * (dsocr_run then returns DSOCR_OK with stopped = 1 and the text so far). */
typedef int (*dsocr_token_cb)(const char* piece, size_t len, void* user);

/* "0.1.0" */
DSOCR_API const char* dsocr_version(void);
/* The name of a status code: "DSOCR_E_IO". */
DSOCR_API const char* dsocr_status_name(dsocr_status status);
/* The message of the last failed call on this thread; "" after a call that succeeded. */
DSOCR_API const char* dsocr_last_error(void);

DSOCR_API void dsocr_options_default(dsocr_options* options);
DSOCR_API void dsocr_run_params_default(dsocr_run_params* params);

/* Validate the options, read and check the checkpoint and the tokenizer. *out is NULL on error. */
DSOCR_API dsocr_status dsocr_open(const dsocr_options* options, dsocr_engine** out);
/* Free the engine. NULL is a no-op. */
DSOCR_API void dsocr_close(dsocr_engine* engine);

/* OCR one image file (PNG, JPEG, BMP, TGA, binary PNM). `prompt`: a raw prompt with exactly one
 * "<image>", or NULL for the task's prompt; `params`: NULL for the defaults; `cb`: NULL for none.
 * *out is NULL on error. */
DSOCR_API dsocr_status dsocr_run(dsocr_engine* engine, const char* image_path, const char* prompt,
                                 const dsocr_run_params* params, dsocr_token_cb cb, void* user,
                                 dsocr_result** out);
/* The same for pixels in memory: `rgb` is h rows of w RGB8 pixels, rows `stride` bytes apart
 * (stride >= 3 * w). The pixels are copied; no EXIF orientation is applied. */
DSOCR_API dsocr_status dsocr_run_rgb(dsocr_engine* engine, const uint8_t* rgb, int w, int h,
                                     size_t stride, const char* prompt,
                                     const dsocr_run_params* params, dsocr_token_cb cb,
                                     void* user, dsocr_result** out);
/* Free a result and every string and array in it. NULL is a no-op. */
DSOCR_API void dsocr_result_free(dsocr_result* result);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* DSOCR_H_ */
