/* OCR one image with libdsocr: text streams to stdout as it is generated, then the grounding
 * blocks and the token counts. Usage: example MODEL_DIR IMAGE [cpu|cuda] [tiny|gundam] [MAX_TOKENS] */
#include <dsocr.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int print_piece(const char* piece, size_t len, void* user) {
  (void)user;
  fwrite(piece, 1, len, stdout);
  fflush(stdout);
  return 0; /* non-zero stops generation */
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s MODEL_DIR IMAGE [cpu|cuda] [tiny|gundam] [MAX_TOKENS]\n", argv[0]);
    return 2;
  }
  dsocr_options opt;
  dsocr_options_default(&opt);
  opt.model_dir = argv[1];
  if (argc > 3) opt.device = argv[3];
  if (argc > 4) opt.mode = strcmp(argv[4], "tiny") == 0 ? DSOCR_MODE_TINY : DSOCR_MODE_GUNDAM;
  if (argc > 5) opt.max_tokens = atoi(argv[5]);

  dsocr_engine* engine = NULL;
  dsocr_status s = dsocr_open(&opt, &engine);
  if (s != DSOCR_OK) {
    fprintf(stderr, "example: %s: %s\n", dsocr_status_name(s), dsocr_last_error());
    return 1;
  }
  dsocr_result* r = NULL;
  s = dsocr_run(engine, argv[2], NULL, NULL, print_piece, NULL, &r);
  if (s != DSOCR_OK) {
    fprintf(stderr, "example: %s: %s\n", dsocr_status_name(s), dsocr_last_error());
    dsocr_close(engine);
    return 1;
  }
  printf("\n");
  for (int i = 0; i < r->n_blocks; ++i) {
    const dsocr_block* b = &r->blocks[i];
    if (b->n_boxes > 0)
      printf("%s [%d,%d,%d,%d]: %s\n", b->label, b->boxes[0].x1, b->boxes[0].y1, b->boxes[0].x2,
             b->boxes[0].y2, b->text);
  }
  printf("dsocr %s: %dx%d page, %d image tokens, %d tokens%s, decode %.0f ms\n", dsocr_version(),
         r->page_width, r->page_height, r->image_tokens, r->generated_tokens,
         r->eos ? " (EOS)" : "", r->ms_decode);
  dsocr_result_free(r);
  dsocr_close(engine);
  return 0;
}
