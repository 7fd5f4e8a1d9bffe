// Image-embedding assembly (../shared/MODEL.md §4.5): projector features of the global view and
// the tiles laid out as 2-D grids, an `image_newline` after every row, tiles stitched into one
// grid first, order LOCAL (tiles) -> GLOBAL -> `view_seperator`.
#pragma once

#include <cstdint>

namespace dsocr {

// Rows the assembled sequence has: g*(g+1) + 1, plus (h_t*t)*(w_t*t+1) when tiled.
int64_t image_embed_rows(int g, int t, int w_t, int h_t);

// PRECOND: out has image_embed_rows(g, t, w_t, h_t) rows of `dim`; tiles may be null when
// w_t == h_t == 1 (no tiles). Tile i is grid cell (row i / w_t, column i % w_t).
void assemble_image_embeds(const float* global,     // [g*g, dim] projector output, row-major grid
                           int g,                   // global grid side (S/64)
                           const float* tiles,      // [w_t*h_t, t*t, dim] or null
                           int t,                   // tile grid side (10 for 640 tiles)
                           int w_t, int h_t,        // tiles across, down
                           const uint16_t* newline,   // [dim] BF16 image_newline
                           const uint16_t* separator, // [dim] BF16 view_seperator
                           float* out,              // [image_embed_rows(...), dim]
                           int dim);

}  // namespace dsocr
