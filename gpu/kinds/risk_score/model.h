/* The "risk.model" object class: XGBoost JSON models (SPEC 1.3, 2.4).
 *
 * A model is uploaded as the JSON file XGBoost 1.x, 2.x or 3.x writes (save_model
 * with a .json name) and stored as those bytes. Only what the scorer reproduces
 * exactly is accepted: booster "gbtree", objective "binary:logistic", one output
 * (num_class 0 or 1, tree_info all 0), numerical splits only, base_score in (0, 1)
 * written as "5E-1" or "[5E-1]". Every tree is checked: its arrays agree in length,
 * children are in range, each node is reached once from the root (no cycle), leaves
 * have no children, and every split reads a feature below num_feature. Nodes a pruned
 * tree left unreachable are ignored, as XGBoost ignores them. The bare NaN and Infinity
 * tokens XGBoost writes for non-finite floats are read as null: harmless in statistics
 * the scorer does not read, refused where it does (a split condition).
 *
 * The compiled form is a struct risk_forest (forest_math.h), which the kind scores
 * with risk_forest_margin and risk_sigmoid. The JSON is read by xjson.c, so the class
 * is part of the compute half (no JSON library). */
#pragma once

#include <stddef.h>

#include "object.h"
#include "risk_score/forest_math.h"

/* The class (name "risk.model"). validate parses and compiles the upload and reports
 * trees and features; compile reads the stored JSON blob; snapshots are struct
 * risk_forest. Errors name the JSON field ("model" for bytes that are not a JSON
 * object, else a dotted path such as "learner.objective.name" or
 * "learner.gradient_booster.model.trees[3].left_children"). */
extern const struct kiln_object_class risk_model_class;

/* The most the JSON parse of a model of `len` bytes may allocate: 8 times its size
 * and 4 MiB. A model XGBoost writes takes about 3.5 times its size to parse and
 * compile (measured: 8 MB of 1,000 shallow trees, 28 MB); a file of mostly one-digit
 * values could take 40 times, and is refused instead. */
size_t risk_model_parse_bytes(size_t len);
/* What checking or loading a model of `len` bytes may hold at its peak: the parse and
 * the forest compiled from it (11 times its size and 5 MiB). */
size_t risk_model_work_bytes(size_t len);

/* Compiles `len` bytes of XGBoost JSON into a new forest (*ret_forest, freed with
 * risk_forest_free). Returns >= 0, -EINVAL with err filled when the model is refused
 * (also when its parse would take more than risk_model_parse_bytes), or -ENOMEM. */
int risk_forest_compile(const void *json, size_t len, struct risk_forest **ret_forest,
                        struct kiln_error *err);

/* Frees a forest from risk_forest_compile. Accepts NULL. */
void risk_forest_free(struct risk_forest *f);

/* ---- the meta the store keeps with each model version ----
 *
 * 16 bytes: u8 format (1), three zero bytes, u32 LE features, u64 LE trees. Listing
 * models reads it instead of parsing their JSON, and risk.score checks a job's rows
 * against its features at submission (kiln_kind.check_meta), before the model is
 * loaded. Every stored model has had it since models could be stored. */
#define RISK_MODEL_META_BYTES 16u

void risk_model_meta_encode(uint64_t trees, uint32_t features, uint8_t ret_meta[RISK_MODEL_META_BYTES]);
/* Returns 0, or -EINVAL when the bytes are not a model meta of this format. */
int risk_model_meta_decode(const void *meta, size_t len, uint64_t *ret_trees, uint32_t *ret_features);
