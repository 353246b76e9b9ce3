/* lens.raytrace math shared by the C implementation and the CUDA kernel (SPEC 1.2).
 *
 * Ray shooting through an NFW lens: each of the ss x ss sub-rays of a pixel, at
 * theta, lands on the source plane at beta = theta - alpha(theta), alpha = kbar theta
 * (nfw_math.h); the pixel is the mean brightness of a circular Gaussian source (peak
 * 1) at those betas. Double precision, static inline, host+device. */
#pragma once

#include <math.h>

#include "../lens_nfw/nfw_math.h"

/* One pixel centred on (tx, ty) arcsec, of side delta, supersampled ss x ss (ss >= 1),
 * for a halo (theta_s arcsec, kappa_s) and a source at (sx, sy) of width sigma. */
KILN_HD static inline double raytrace_pixel(double tx, double ty, double delta, int ss, double theta_s,
                                            double kappa_s, double sx, double sy, double sigma)
{
        double inv_2s2 = 0.5 / (sigma * sigma);
        double sum = 0.0;

        for (int a = 0; a < ss; a++) {
                double y = ty + ((a + 0.5) / ss - 0.5) * delta;
                for (int b = 0; b < ss; b++) {
                        double x = tx + ((b + 0.5) / ss - 0.5) * delta;
                        double r = hypot(x, y);
                        double k = r > 0.0 ? kappa_s * nfw_kbar(r / theta_s) : 0.0;
                        double bx = x - k * x - sx, by = y - k * y - sy;
                        sum += exp(-(bx * bx + by * by) * inv_2s2);
                }
        }
        return sum / (double)(ss * ss);
}
