/* Flat Lambda-CDM distances and the lens.nfw scalars (see cosmo.h). */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "cosmo.h"
#include "nfw_math.h"

#define SIMPSON_MAX_DEPTH 48

double kiln_cosmo_e(double z, double omega_m)
{
        double a = 1.0 + z;

        return sqrt(omega_m * a * a * a + 1.0 - omega_m);
}

static double inv_e(double z, double omega_m)
{
        return 1.0 / kiln_cosmo_e(z, omega_m);
}

/* Adaptive Simpson on [a, b] given f at a, m, b and the whole-interval estimate. */
static double simpson(double a, double b, double fa, double fm, double fb, double whole, double tol,
                      int depth, double omega_m)
{
        double m = 0.5 * (a + b);
        double lm = 0.5 * (a + m), rm = 0.5 * (m + b);
        double flm = inv_e(lm, omega_m), frm = inv_e(rm, omega_m);
        double left = (m - a) / 6.0 * (fa + 4.0 * flm + fm);
        double right = (b - m) / 6.0 * (fm + 4.0 * frm + fb);
        double diff = left + right - whole;

        if (depth <= 0 || fabs(diff) <= 15.0 * tol)
                return left + right + diff / 15.0;
        return simpson(a, m, fa, flm, fm, left, 0.5 * tol, depth - 1, omega_m) +
               simpson(m, b, fm, frm, fb, right, 0.5 * tol, depth - 1, omega_m);
}

/* The integral of 1/E from 0 to z, which depends on z and omega_m only. Jobs mostly
 * share a few cosmologies and redshifts (the defaults above all), and the adaptive
 * integration costs ~30 us, several times a small map, so each thread remembers the
 * last few: a small direct-mapped table keyed by the exact bits of both inputs. */
#define MEMO_SLOTS 16

struct memo_slot {
        uint64_t z_bits, omega_m_bits;
        double integral;
        bool used;
};

static _Thread_local struct memo_slot memo[MEMO_SLOTS];

static double inv_e_integral(double z, double omega_m)
{
        uint64_t zb, ob;
        memcpy(&zb, &z, sizeof(zb));
        memcpy(&ob, &omega_m, sizeof(ob));
        uint64_t hash = (zb ^ (ob * 0x9e3779b97f4a7c15ULL)) * 0xff51afd7ed558ccdULL;
        struct memo_slot *slot = &memo[hash >> 60 & (MEMO_SLOTS - 1)];

        if (slot->used && slot->z_bits == zb && slot->omega_m_bits == ob)
                return slot->integral;

        double fa = inv_e(0.0, omega_m), fm = inv_e(0.5 * z, omega_m), fb = inv_e(z, omega_m);
        double whole = z / 6.0 * (fa + 4.0 * fm + fb);
        double integral = simpson(0.0, z, fa, fm, fb, whole, 1e-14 * z, SIMPSON_MAX_DEPTH, omega_m);
        *slot = (struct memo_slot){ .z_bits = zb, .omega_m_bits = ob, .integral = integral, .used = true };
        return integral;
}

int kiln_cosmo_comoving_mpc(double z, double h, double omega_m, double *ret_mpc)
{
        if (!isfinite(z) || z < 0.0 || !isfinite(h) || h <= 0.0 || !isfinite(omega_m) || omega_m < 0.0 ||
            omega_m > 1.0)
                return -EINVAL;

        double integral = z > 0.0 ? inv_e_integral(z, omega_m) : 0.0;
        /* c / H0 with H0 = 100 h km/s/Mpc. */
        *ret_mpc = KILN_C_KM_S / (100.0 * h) * integral;
        return 0;
}

double kiln_cosmo_rho_crit(double z, double h, double omega_m)
{
        double hz = 0.1 * h * kiln_cosmo_e(z, omega_m); /* km/s/kpc */

        return 3.0 * hz * hz / (8.0 * M_PI * KILN_G_KPC);
}

double kiln_nfw_einstein_ln_x(double kappa_s)
{
        /* Small-x asymptote: kbar/kappa_s = 2 (ln 2 - ln x - 1/2) + O(x^2 ln x). */
        double u_asym = 0.6931471805599453 - 0.5 - 0.5 / kappa_s;

        if (u_asym < -40.0)
                return u_asym;

        /* kbar decreases monotonically in x; at ln x = -45 it exceeds 1 here. */
        double lo = -45.0, hi = 0.0;
        while (kappa_s * nfw_kbar(exp(hi)) > 1.0 && hi < 700.0) {
                lo = hi;
                hi += 1.0;
        }
        for (int i = 0; i < 200; i++) {
                double mid = 0.5 * (lo + hi);
                if (mid <= lo || mid >= hi)
                        break;
                if (kappa_s * nfw_kbar(exp(mid)) > 1.0)
                        lo = mid;
                else
                        hi = mid;
        }
        return 0.5 * (lo + hi);
}

int kiln_nfw_lens_scalars(double mass, double concentration, double z_lens, double z_source, double h,
                          double omega_m, struct nfw_lens_scalars *ret)
{
        struct nfw_lens_scalars s;
        double chi_l, chi_s;
        int r;

        if (!(mass > 0.0) || !isfinite(mass) || !(concentration > 0.0) || !isfinite(concentration) ||
            !(z_lens > 0.0) || !(z_source > z_lens))
                return -EINVAL;
        r = kiln_cosmo_comoving_mpc(z_lens, h, omega_m, &chi_l);
        if (r < 0)
                return r;
        r = kiln_cosmo_comoving_mpc(z_source, h, omega_m, &chi_s);
        if (r < 0)
                return r;

        /* Flat space: D_A = chi/(1+z), D_ls = (chi_s - chi_l)/(1 + z_s). */
        s.d_l_mpc = chi_l / (1.0 + z_lens);
        s.d_s_mpc = chi_s / (1.0 + z_source);
        s.d_ls_mpc = (chi_s - chi_l) / (1.0 + z_source);

        double rho_c = kiln_cosmo_rho_crit(z_lens, h, omega_m);
        double c = concentration;
        s.r200_kpc = cbrt(3.0 * mass / (800.0 * M_PI * rho_c));
        s.r_s_kpc = s.r200_kpc / c;
        s.rho_s_msun_kpc3 = 200.0 / 3.0 * rho_c * c * c * c / (log1p(c) - c / (1.0 + c));

        double d_l = 1e3 * s.d_l_mpc, d_s = 1e3 * s.d_s_mpc, d_ls = 1e3 * s.d_ls_mpc;
        s.sigma_cr_msun_kpc2 = KILN_C_KM_S * KILN_C_KM_S * d_s / (4.0 * M_PI * KILN_G_KPC * d_l * d_ls);
        s.kappa_s = s.rho_s_msun_kpc3 * s.r_s_kpc / s.sigma_cr_msun_kpc2;
        s.theta_s_arcsec = s.r_s_kpc / d_l * KILN_ARCSEC_PER_RAD;
        if (!isfinite(s.kappa_s) || !(s.kappa_s > 0.0) || !isfinite(s.theta_s_arcsec) || !(s.theta_s_arcsec > 0.0))
                return -EINVAL;

        double theta_e = s.theta_s_arcsec * exp(kiln_nfw_einstein_ln_x(s.kappa_s));
        s.theta_e_arcsec = theta_e >= DBL_MIN ? theta_e : NAN;

        *ret = s;
        return 0;
}
