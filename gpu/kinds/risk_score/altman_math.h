/* Altman's Z-scores and their zones (SPEC 1.3), shared by the C implementation and
 * the CUDA kernel.
 *
 *   Z   (1968):  1.2 X1 + 1.4 X2 + 3.3 X3 + 0.6 X4 + 1.0 X5;  distress < 1.81 < grey < 2.99 < safe
 *   Z'' (1995):  6.56 X1 + 3.26 X2 + 6.72 X3 + 1.05 X4;      distress < 1.1  < grey < 2.6  < safe
 *
 * z is summed in double, in column order, with every product and sum rounded on its
 * own (the device's intrinsics keep nvcc from fusing them), then rounded to float32:
 * both backends give the same bits. The zone is read off that float32 z against the
 * float32 boundaries, so a z that prints as a boundary is on it, and on it is grey. */
#pragma once

#include <stdint.h>

#include "hostdev.h"

/* What params.model names. */
enum risk_model_id {
        RISK_MODEL_STORED = 0,   /* a stored XGBoost model (the job's object) */
        RISK_MODEL_ALTMAN_Z = 1, /* "altman-z", 5 columns */
        RISK_MODEL_ALTMAN_Z2 = 2,/* "altman-z2", 4 columns */
};

enum risk_zone {
        RISK_ZONE_DISTRESS = 0,
        RISK_ZONE_GREY = 1,
        RISK_ZONE_SAFE = 2,
};

/* Columns a row of the Altman model must have; 0 for a stored model. */
KILN_HD static inline uint32_t risk_altman_columns(enum risk_model_id m)
{
        return m == RISK_MODEL_ALTMAN_Z ? 5u : m == RISK_MODEL_ALTMAN_Z2 ? 4u : 0u;
}

KILN_HD static inline double risk_mul_rn(double a, double b)
{
#ifdef __CUDA_ARCH__
        return __dmul_rn(a, b);
#else
        return a * b;
#endif
}

KILN_HD static inline double risk_add_rn(double a, double b)
{
#ifdef __CUDA_ARCH__
        return __dadd_rn(a, b);
#else
        return a + b;
#endif
}

/* z of one row (risk_altman_columns(m) values). */
KILN_HD static inline float risk_altman_z(enum risk_model_id m, const float *x)
{
        double z;

        if (m == RISK_MODEL_ALTMAN_Z) {
                z = risk_mul_rn(1.2, x[0]);
                z = risk_add_rn(z, risk_mul_rn(1.4, x[1]));
                z = risk_add_rn(z, risk_mul_rn(3.3, x[2]));
                z = risk_add_rn(z, risk_mul_rn(0.6, x[3]));
                z = risk_add_rn(z, risk_mul_rn(1.0, x[4]));
        } else {
                z = risk_mul_rn(6.56, x[0]);
                z = risk_add_rn(z, risk_mul_rn(3.26, x[1]));
                z = risk_add_rn(z, risk_mul_rn(6.72, x[2]));
                z = risk_add_rn(z, risk_mul_rn(1.05, x[3]));
        }
        return (float)z;
}

/* The zone of z: strictly below the lower boundary is distress, strictly above the
 * upper one safe, anything between (boundaries included) grey. */
KILN_HD static inline uint8_t risk_altman_zone(enum risk_model_id m, float z)
{
        float lo = m == RISK_MODEL_ALTMAN_Z ? 1.81f : 1.1f, hi = m == RISK_MODEL_ALTMAN_Z ? 2.99f : 2.6f;

        if (z < lo)
                return RISK_ZONE_DISTRESS;
        if (z > hi)
                return RISK_ZONE_SAFE;
        return RISK_ZONE_GREY;
}
