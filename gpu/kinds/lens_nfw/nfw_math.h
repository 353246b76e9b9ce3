/* NFW lensing math shared by the C implementation and the CUDA kernel.
 *
 * Every function is `static inline`, double precision, and uses nothing beyond
 * <math.h>, so nvcc and the C compiler build the same formulas. All functions of
 * `x` take the dimensionless radius x = R / r_s = theta / theta_s (x > 0).
 *
 * The closed forms (Bartelmann 1996; Wright & Brainerd 2000) are written with
 * s = sqrt(|1 - x^2|) so that no branch loses precision away from x = 1:
 *   F(x) = atanh(s)/s = (log1p(s) - log x)/s       x < 1   (= arccosh(1/x)/sqrt(1-x^2))
 *   F(x) = atan(s)/s                               x > 1   (= arccos(1/x)/sqrt(x^2-1))
 *   F(1) = 1.
 * Both forms are one analytic function of w = 1 - x^2, F = sum_k w^k/(2k+1), which
 * is the series used for |x - 1| < NFW_SERIES_DX, where 1 - F (in kappa) cancels
 * catastrophically in the closed forms. With |w| < 0.041 and terms up to w^11 the
 * truncation error is below 1e-15 relative, and just outside the threshold the
 * closed forms lose at most ~1e-14 relative.
 *
 *   kappa(x)/kappa_s = 2 (1 - F)/(x^2 - 1)
 *   kbar(x)/kappa_s  = 4 g(x)/x^2, g = ln(x/2) + F    (mean convergence inside x)
 *   h(x)             = ln^2(x/2) - arccosh^2(1/x)     x < 1
 *                    = ln^2(x/2) + arccos^2(1/x)      x > 1
 *                    = ln^2(x/2) - w F^2              (all x; used in the series band)
 *   psi = 2 kappa_s theta_s^2 h(x), alpha = kbar theta, |gamma| = kbar - kappa.
 *
 * kbar diverges logarithmically at the centre: kbar/kappa_s = 2 (ln(2/x) - 1/2)
 * + O(x^2 ln x), so every NFW halo has an Einstein radius (possibly tiny). */
#pragma once

#include <math.h>

#include "hostdev.h"

/* Half-width of the band around x = 1 evaluated by the series in w = 1 - x^2. */
#define NFW_SERIES_DX 0.02

/* The largest float; mu is clamped to it so that float32 output is never Inf. */
#define NFW_FLT_MAX 3.4028234663852886e38

/* Output slots of nfw_pixel(), in SPEC order. */
enum nfw_map {
        NFW_MAP_KAPPA,
        NFW_MAP_GAMMA1,
        NFW_MAP_GAMMA2,
        NFW_MAP_ALPHA_X,
        NFW_MAP_ALPHA_Y,
        NFW_MAP_MU,
        NFW_MAP_PSI,
        NFW_N_MAPS,
};

/* P(w) = sum_{k>=1} w^(k-1)/(2k+1), so that F = 1 + w P(w) and kappa/kappa_s = 2 P(w). */
KILN_HD static inline double nfw_series_p(double w)
{
        double p = 1.0 / 25.0;
        p = p * w + 1.0 / 23.0;
        p = p * w + 1.0 / 21.0;
        p = p * w + 1.0 / 19.0;
        p = p * w + 1.0 / 17.0;
        p = p * w + 1.0 / 15.0;
        p = p * w + 1.0 / 13.0;
        p = p * w + 1.0 / 11.0;
        p = p * w + 1.0 / 9.0;
        p = p * w + 1.0 / 7.0;
        p = p * w + 1.0 / 5.0;
        p = p * w + 1.0 / 3.0;
        return p;
}

/* w = 1 - x^2 without cancellation. */
KILN_HD static inline double nfw_w(double x)
{
        return (1.0 - x) * (1.0 + x);
}

/* s = sqrt(x^2 - 1) for x > 1, without overflow for huge x. */
KILN_HD static inline double nfw_s_above(double x)
{
        return x < 1e8 ? sqrt((x - 1.0) * (x + 1.0)) : x;
}

/* F(x) from the closed forms only (three branches), for reference and tests. */
KILN_HD static inline double nfw_F_closed(double x)
{
        if (x < 1.0) {
                double s = sqrt(nfw_w(x));
                return (log1p(s) - log(x)) / s;
        }
        if (x > 1.0) {
                double s = nfw_s_above(x);
                return atan(s) / s;
        }
        return 1.0;
}

/* F(x) from the series in w = 1 - x^2 (accurate for |x - 1| < NFW_SERIES_DX). */
KILN_HD static inline double nfw_F_series(double x)
{
        double w = nfw_w(x);
        return 1.0 + w * nfw_series_p(w);
}

/* F(x): the series near x = 1, the closed forms elsewhere. */
KILN_HD static inline double nfw_F(double x)
{
        return fabs(x - 1.0) < NFW_SERIES_DX ? nfw_F_series(x) : nfw_F_closed(x);
}

/* log1p(-u)/u, with its limit -1 - u/2 for tiny u (u >= 0). */
KILN_HD static inline double nfw_log1m_over(double u)
{
        return u < 1e-8 ? -1.0 - 0.5 * u : log1p(-u) / u;
}

/* Everything the maps need at one radius, in units of kappa_s. */
struct nfw_terms {
        double kappa; /* kappa / kappa_s */
        double kbar;  /* mean kappa inside x / kappa_s */
        double h;     /* potential term h(x) */
};

/* Computes kappa/kappa_s, kbar/kappa_s and h(x) for x > 0 (including subnormal and
 * very large x) with no NaN and no overflow. */
KILN_HD static inline struct nfw_terms nfw_terms_at(double x)
{
        struct nfw_terms t;

        if (fabs(x - 1.0) < NFW_SERIES_DX) {
                double w = nfw_w(x);
                double p = nfw_series_p(w);
                double f = 1.0 + w * p;
                double l2 = log(0.5 * x);
                t.kappa = 2.0 * p;
                t.kbar = 4.0 * (l2 + f) / (x * x);
                t.h = l2 * l2 - w * f * f;
        } else if (x < 1.0) {
                /* u = (1 - s)/2 = x^2/(2(1+s)); ln(x/2) + arccosh(1/x) = log1p(-u). */
                double s = sqrt(nfw_w(x));
                double lx = log(x);
                double a = log1p(s) - lx; /* arccosh(1/x) */
                double f = a / s;
                double u = 0.5 * (x / (1.0 + s)) * x;
                double lu = nfw_log1m_over(u);
                t.kappa = 2.0 * (f - 1.0) / (s * s);
                /* 4 g/x^2 with g = [x^2/(1+s) ln(2/x) + log1p(-u)]/s. */
                t.kbar = 4.0 / (s * (1.0 + s)) * ((0.6931471805599453 - lx) + 0.5 * lu);
                t.h = (lx - 0.6931471805599453 - a) * (lu * u);
        } else {
                double s = nfw_s_above(x);
                double at = atan(s);
                double f = at / s;
                double l2 = log(0.5 * x);
                t.kappa = 2.0 * ((1.0 - f) / (x - 1.0)) / (x + 1.0);
                t.kbar = 4.0 * ((l2 + f) / x) / x;
                t.h = l2 * l2 + at * at;
        }
        return t;
}

/* kappa(x)/kappa_s. */
KILN_HD static inline double nfw_kappa(double x)
{
        return nfw_terms_at(x).kappa;
}

/* Mean convergence inside x, divided by kappa_s. */
KILN_HD static inline double nfw_kbar(double x)
{
        return nfw_terms_at(x).kbar;
}

/* The potential term h(x); psi = 2 kappa_s theta_s^2 h(x). */
KILN_HD static inline double nfw_h(double x)
{
        return nfw_terms_at(x).h;
}

/* The maps that depend on the radius only, from the terms at x = r / theta_s
 * (nfw_terms_at), shared by every pixel at that radius. */
struct nfw_radial {
        double kappa, kbar, gamma, mu, psi;
};

KILN_HD static inline struct nfw_radial nfw_radial_at(const struct nfw_terms *t, double theta_s, double kappa_s)
{
        struct nfw_radial q;

        q.kappa = kappa_s * t->kappa;
        q.kbar = kappa_s * t->kbar;
        q.gamma = q.kbar - q.kappa;
        /* (1-kappa)^2 - gamma^2 = (1 - kbar)(1 - 2 kappa + kbar), without cancellation. */
        double det = (1.0 - q.kbar) * (1.0 - 2.0 * q.kappa + q.kbar);
        q.mu = 1.0 / det;
        if (!(fabs(q.mu) <= NFW_FLT_MAX))
                q.mu = copysign(NFW_FLT_MAX, q.mu);
        q.psi = 2.0 * kappa_s * theta_s * theta_s * t->h;
        return q;
}

/* The shear at a pixel centre (theta_x, theta_y) at radius r > 0: the part that
 * depends on the direction, besides alpha = kbar * theta. */
KILN_HD static inline void nfw_shear_at(double theta_x, double theta_y, double r, const struct nfw_radial *q,
                                        double *gamma1, double *gamma2)
{
        double ux = theta_x / r, uy = theta_y / r;

        *gamma1 = -q->gamma * ((ux - uy) * (ux + uy));
        *gamma2 = -q->gamma * (2.0 * ux * uy);
}

/* All seven maps at a pixel centre (theta_x, theta_y) at radius r = hypot(theta_x,
 * theta_y) > 0, from the terms at x = r / theta_s (nfw_terms_at). */
KILN_HD static inline void nfw_pixel_at(double theta_x, double theta_y, double r, const struct nfw_terms *t,
                                        double theta_s, double kappa_s, double *out)
{
        struct nfw_radial q = nfw_radial_at(t, theta_s, kappa_s);

        out[NFW_MAP_KAPPA] = q.kappa;
        nfw_shear_at(theta_x, theta_y, r, &q, &out[NFW_MAP_GAMMA1], &out[NFW_MAP_GAMMA2]);
        out[NFW_MAP_ALPHA_X] = q.kbar * theta_x;
        out[NFW_MAP_ALPHA_Y] = q.kbar * theta_y;
        out[NFW_MAP_MU] = q.mu;
        out[NFW_MAP_PSI] = q.psi;
}

/* The maps at the halo's centre (r = 0). */
KILN_HD static inline void nfw_pixel_centre(double kappa_s, double *out)
{
        out[NFW_MAP_KAPPA] = INFINITY;
        out[NFW_MAP_GAMMA1] = -kappa_s;
        out[NFW_MAP_GAMMA2] = 0.0;
        out[NFW_MAP_ALPHA_X] = 0.0;
        out[NFW_MAP_ALPHA_Y] = 0.0;
        out[NFW_MAP_MU] = 0.0;
        out[NFW_MAP_PSI] = 0.0;
}

/* All seven maps at one pixel centre (theta_x, theta_y) in arcsec for a halo with
 * scale radius theta_s (arcsec) and convergence scale kappa_s, written to
 * out[NFW_MAP_*]: kappa, gamma1, gamma2, alpha_x, alpha_y (arcsec), mu, psi (arcsec^2).
 * At theta = 0 the cusp gives kappa = +Inf and the limits alpha = 0, gamma1 = -kappa_s,
 * gamma2 = 0, mu = 0, psi = 0. mu is clamped to +-NFW_FLT_MAX so that no value but the
 * central kappa turns into Inf in float32. */
KILN_HD static inline void nfw_pixel(double theta_x, double theta_y, double theta_s, double kappa_s,
                                     double *out)
{
        double r = hypot(theta_x, theta_y);

        if (r == 0.0) {
                nfw_pixel_centre(kappa_s, out);
                return;
        }
        struct nfw_terms t = nfw_terms_at(r / theta_s);
        nfw_pixel_at(theta_x, theta_y, r, &t, theta_s, kappa_s, out);
}
