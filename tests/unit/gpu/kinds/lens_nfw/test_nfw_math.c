/* lens.nfw math and CPU implementation.
 *
 * The closed forms are checked against lenstronomy's published values and against
 * independent numerical integrations done here: the line-of-sight integral of the
 * 3-D NFW density (kappa), the projected mass inside a cylinder (mean kappa), and the
 * radial integral of the deflection (potential). The whole CPU run is then checked
 * pixel by pixel against those integrals within the SPEC accuracy. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kind.h"
#include "lens_nfw/cosmo.h"
#include "lens_nfw/lens_nfw.h"
#include "lens_nfw/nfw_math.h"

/* ---- an independent adaptive Simpson integrator (positive integrands) ---- */

typedef double (*integrand_fn)(double t, const void *ctx);

struct quad {
        integrand_fn f;
        const void *ctx;
        double rel;
};

static double simpson_step(const struct quad *q, double a, double b, double fa, double fm, double fb,
                           double whole, int depth)
{
        double m = 0.5 * (a + b);
        double flm = q->f(0.5 * (a + m), q->ctx), frm = q->f(0.5 * (m + b), q->ctx);
        double left = (m - a) / 6.0 * (fa + 4.0 * flm + fm);
        double right = (b - m) / 6.0 * (fm + 4.0 * frm + fb);
        double diff = left + right - whole;

        if (depth > 40 || (depth >= 2 && fabs(diff) <= 15.0 * q->rel * fabs(left + right)))
                return left + right + diff / 15.0;
        return simpson_step(q, a, m, fa, flm, fm, left, depth + 1) +
               simpson_step(q, m, b, fm, frm, fb, right, depth + 1);
}

/* Integral of f over [a, b], split into `panels` adaptive panels. */
static double integrate(integrand_fn f, const void *ctx, double a, double b, int panels, double rel)
{
        struct quad q = { f, ctx, rel };
        double sum = 0.0, h = (b - a) / panels;

        for (int k = 0; k < panels; k++) {
                double lo = a + k * h, hi = k == panels - 1 ? b : a + (k + 1) * h;
                double fa = f(lo, ctx), fm = f(0.5 * (lo + hi), ctx), fb = f(hi, ctx);
                sum += simpson_step(&q, lo, hi, fa, fm, fb, (hi - lo) / 6.0 * (fa + 4.0 * fm + fb), 0);
        }
        return sum;
}

/* ---- independent NFW projections in units r_s = 1, rho_s = 1 (so kappa_s = 1) ---- */

/* rho(r) = 1/(r (1+r)^2); along the line of sight z = x sinh t, r = x cosh t,
 * rho dz = dt/(1 + x cosh t)^2. */
static double los_integrand(double t, const void *ctx)
{
        double x = *(const double *)ctx;
        double d = 1.0 + x * cosh(t);

        return 1.0 / (d * d);
}

/* Sigma(x) / (rho_s r_s) = kappa / kappa_s by integrating the 3-D density along the
 * line of sight. */
static double kappa_los(double x)
{
        double T = 20.0 + fmax(0.0, log(2.0 / x));

        return 2.0 * integrate(los_integrand, &x, 0.0, T, 16, 1e-12);
}

/* Mass of the sphere r < x, with r = x e^-v: 4 pi r^2 rho dr = 4 pi r^2/(1+r)^2 dv. */
static double sphere_integrand(double v, const void *ctx)
{
        double r = *(const double *)ctx * exp(-v);
        double d = 1.0 + r;

        return r * r / (d * d);
}

/* Mass of the shell r > x inside the cylinder R < x: 4 pi r^2 rho (1 - sqrt(1 - x^2/r^2)) dr
 * with r = x cosh t, where 1 - tanh t = 2/(e^2t + 1). */
static double shell_integrand(double t, const void *ctx)
{
        double x = *(const double *)ctx;
        double d = 1.0 + x * cosh(t);

        return x * x * 0.5 * sinh(2.0 * t) * (2.0 / (exp(2.0 * t) + 1.0)) / (d * d);
}

/* Mean kappa inside x / kappa_s = M_cyl(x) / (pi x^2) from the 3-D density. */
static double kbar_cylinder(double x)
{
        double V = 20.0 + fmax(0.0, log(x));
        double T = 20.0 + fmax(0.0, log(2.0 / x));
        double sphere = integrate(sphere_integrand, &x, 0.0, V, 16, 1e-12);
        double shell = integrate(shell_integrand, &x, 0.0, T, 16, 1e-12);

        return 4.0 / (x * x) * (sphere + shell);
}

/* alpha(x) in units of theta_s: kbar(x) x (its limit 0 at x = 0). */
static double alpha_integrand(double x, const void *ctx)
{
        return x > 0.0 ? kbar_cylinder(x) * x : 0.0;
}

/* The potential h(x) = psi / (2 kappa_s theta_s^2), as half the radial integral of alpha. */
static double h_from_alpha(double x0, double x1)
{
        return 0.5 * integrate(alpha_integrand, NULL, x0, x1, 1, 1e-9);
}

static void assert_rel(double got, double want, double rel, const char *what, double x)
{
        double err = fabs(got - want);

        if (!(err <= rel * fabs(want)))
                fail_msg("%s at x = %.17g: got %.17g, want %.17g (relative error %.3g > %.3g)", what, x, got, want,
                         err / fabs(want), rel);
}

static const double radii[] = {
        1e-6, 1e-3, 0.01, 0.1, 0.3, 0.5, 0.9, 0.979, 0.98, 0.981, 0.999, 0.9999, 1.0, 1.0001, 1.001,
        1.019, 1.02, 1.021, 1.1, 1.5, 2.0, 5.0, 10.0, 100.0, 1e3, 1e6,
};
#define N_RADII (sizeof(radii) / sizeof(radii[0]))

/* ---- closed forms against published and independent values ---- */

static void test_potential_matches_lenstronomy(void **state)
{
        double out[NFW_N_MAPS];

        nfw_pixel(1.0, 2.0, 1.0, 1.0, out);
        assert_rel(out[NFW_MAP_PSI], 2.4764530888727556, 1e-12, "psi(1, 2)", sqrt(5.0));
}

static void test_hessian_matches_lenstronomy(void **state)
{
        const double fxx = 0.40855527280658294, fyy = 0.037870368296371637, fxy = -0.2471232696734742;
        double out[NFW_N_MAPS];

        nfw_pixel(1.0, 2.0, 1.0, 1.0, out);
        assert_true(fabs(out[NFW_MAP_KAPPA] - 0.5 * (fxx + fyy)) < 1e-12);
        assert_true(fabs(out[NFW_MAP_GAMMA1] - 0.5 * (fxx - fyy)) < 1e-12);
        assert_true(fabs(out[NFW_MAP_GAMMA2] - fxy) < 1e-12);
}

static void test_distances_match_published_values(void **state)
{
        struct nfw_lens_scalars s;

        assert_int_equal(kiln_nfw_lens_scalars(1e14, 5.0, 0.8, 3.0, 0.7, 0.3, &s), 0);
        assert_rel(s.d_l_mpc, 1548.7055, 1e-7, "D_d", 0.8);
        assert_rel(s.d_s_mpc, 1588.9214, 1e-7, "D_s", 3.0);
        assert_rel(s.d_ls_mpc, 892.0039, 1e-7, "D_ds", 3.0);
}

/* Distances are remembered per thread: asked again, in any order and after other
 * redshifts and cosmologies took the slots, each is the same to the bit, and equal to
 * a straightforward composite Simpson integration. */
static void test_remembered_distances_equal_fresh_ones(void **state)
{
        enum { NZ = 40, NOM = 3, ROUNDS = 3 };
        const double oms[NOM] = { 0.3, 0.25, 0.3000000000000001 };
        double first[NOM][NZ];

        for (int round = 0; round < ROUNDS; round++)
                for (int k = 0; k < NZ * NOM; k++) {
                        /* a different order each round */
                        int idx = (k * (round * 2 + 1) * 7) % (NZ * NOM);
                        int iz = idx % NZ, io = idx / NZ;
                        double z = 0.05 + 0.25 * iz, chi;
                        assert_int_equal(kiln_cosmo_comoving_mpc(z, 0.7, oms[io], &chi), 0);
                        if (round == 0) {
                                first[io][iz] = chi;
                                double sum = 0.0, n = 20000, dz = z / n;
                                for (int i = 0; i <= n; i++) {
                                        double w = i == 0 || i == n ? 1 : (i % 2 ? 4 : 2);
                                        sum += w / kiln_cosmo_e(i * dz, oms[io]);
                                }
                                assert_rel(chi, KILN_C_KM_S / 70.0 * sum * dz / 3.0, 1e-10, "chi", z);
                        } else {
                                assert_memory_equal(&chi, &first[io][iz], sizeof(chi));
                        }
                }
        (void)state;
}

static void test_kappa_matches_line_of_sight_integral(void **state)
{
        for (size_t i = 0; i < N_RADII; i++)
                assert_rel(nfw_kappa(radii[i]), kappa_los(radii[i]), 1e-7, "kappa", radii[i]);
}

static void test_mean_kappa_matches_cylinder_mass(void **state)
{
        for (size_t i = 0; i < N_RADII; i++)
                assert_rel(nfw_kbar(radii[i]), kbar_cylinder(radii[i]), 1e-7, "kbar", radii[i]);
}

static void test_potential_matches_radial_integral_of_deflection(void **state)
{
        const double xs[] = { 0.01, 0.2, 0.98, 1.0, 1.01, 3.0, 20.0 };
        double h = 0.0, prev = 0.0;

        for (size_t i = 0; i < sizeof(xs) / sizeof(xs[0]); i++) {
                h += h_from_alpha(prev, xs[i]);
                prev = xs[i];
                assert_rel(nfw_h(xs[i]), h, 1e-7, "h", xs[i]);
        }
}

static void test_series_agrees_with_closed_forms_at_band_edges(void **state)
{
        const double xs[] = { 1.0 - NFW_SERIES_DX, 1.0 - 0.5 * NFW_SERIES_DX, 1.0 + 0.5 * NFW_SERIES_DX,
                              1.0 + NFW_SERIES_DX };

        for (size_t i = 0; i < sizeof(xs) / sizeof(xs[0]); i++)
                assert_rel(nfw_F_series(xs[i]), nfw_F_closed(xs[i]), 1e-14, "F series", xs[i]);
        assert_true(nfw_F_closed(1.0) == 1.0);
        assert_rel(nfw_kappa(1.0), 2.0 / 3.0, 1e-15, "kappa", 1.0);
        assert_rel(nfw_kbar(1.0), 4.0 * (1.0 - log(2.0)), 1e-15, "kbar", 1.0);
        assert_rel(nfw_h(1.0), log(2.0) * log(2.0), 1e-15, "h", 1.0);
}

static void test_kappa_keeps_full_precision_next_to_x_equal_one(void **state)
{
        /* The closed forms lose ~1e-16/|x-1| there; the series must not. */
        const double xs[] = { 1.0 - 1e-6, 1.0 - 1e-9, 1.0 - 1e-12, 1.0 + 1e-12, 1.0 + 1e-9, 1.0 + 1e-6 };

        for (size_t i = 0; i < sizeof(xs) / sizeof(xs[0]); i++) {
                assert_rel(nfw_kappa(xs[i]), kappa_los(xs[i]), 1e-10, "kappa", xs[i]);
                assert_rel(nfw_kbar(xs[i]), kbar_cylinder(xs[i]), 1e-10, "kbar", xs[i]);
        }
}

static void test_extreme_radii_stay_finite(void **state)
{
        const double xs[] = { 5e-324, 1e-300, 1e-12, 1e6, 1e12, 1e200, 1e308 };

        for (size_t i = 0; i < sizeof(xs) / sizeof(xs[0]); i++) {
                struct nfw_terms t = nfw_terms_at(xs[i]);
                assert_true(isfinite(t.kappa) && t.kappa >= 0.0);
                assert_true(isfinite(t.kbar) && t.kbar >= t.kappa);
                assert_true(isfinite(t.h));
        }
        /* The small-x limits: kappa -> 2 (ln(2/x) - 1), kbar -> 2 (ln(2/x) - 1/2). */
        assert_rel(nfw_kappa(1e-12), 2.0 * (log(2e12) - 1.0), 1e-12, "kappa", 1e-12);
        assert_rel(nfw_kbar(1e-12), 2.0 * (log(2e12) - 0.5), 1e-12, "kbar", 1e-12);
        /* The large-x limits: kappa -> 2/x^2, kbar -> 4 ln(x/2)/x^2. */
        assert_rel(nfw_kappa(1e12), 2e-24, 1e-9, "kappa", 1e12);
        assert_rel(nfw_kbar(1e12), 4.0 * log(5e11) * 1e-24, 1e-9, "kbar", 1e12);
}

static void test_centre_pixel_takes_the_limits(void **state)
{
        double out[NFW_N_MAPS];

        nfw_pixel(0.0, 0.0, 10.0, 0.25, out);
        assert_true(isinf(out[NFW_MAP_KAPPA]) && out[NFW_MAP_KAPPA] > 0);
        assert_true(out[NFW_MAP_GAMMA1] == -0.25);
        assert_true(out[NFW_MAP_GAMMA2] == 0.0);
        assert_true(out[NFW_MAP_ALPHA_X] == 0.0 && out[NFW_MAP_ALPHA_Y] == 0.0);
        assert_true(out[NFW_MAP_MU] == 0.0);
        assert_true(out[NFW_MAP_PSI] == 0.0);
        /* Just off the centre the shear tends to kappa_s. */
        nfw_pixel(1e-200, 0.0, 10.0, 0.25, out);
        assert_rel(out[NFW_MAP_GAMMA1], -0.25, 1e-12, "gamma1", 1e-201);
}

/* ---- scalars ---- */

static double inv_e_integrand(double z, const void *ctx)
{
        double om = *(const double *)ctx;

        return 1.0 / sqrt(om * pow(1.0 + z, 3) + 1.0 - om);
}

static double nfw_shell_mass(double r, const void *ctx)
{
        const double *p = ctx; /* rho_s, r_s */
        double u = r / p[1];

        return 4.0 * M_PI * r * r * p[0] / (u * (1.0 + u) * (1.0 + u));
}

static void test_scalars_follow_the_spec_definitions(void **state)
{
        const double mass = 1e14, c = 5.0, zl = 0.3, zs = 1.0, h = 0.7, om = 0.3;
        const double G = 4.30091727e-6, ckm = 299792.458;
        struct nfw_lens_scalars s;

        assert_int_equal(kiln_nfw_lens_scalars(mass, c, zl, zs, h, om, &s), 0);

        double dh = ckm / (100.0 * h);
        double chi_l = dh * integrate(inv_e_integrand, &om, 0.0, zl, 16, 1e-13);
        double chi_s = dh * integrate(inv_e_integrand, &om, 0.0, zs, 16, 1e-13);
        assert_rel(s.d_l_mpc, chi_l / (1.0 + zl), 1e-10, "D_l", zl);
        assert_rel(s.d_s_mpc, chi_s / (1.0 + zs), 1e-10, "D_s", zs);
        assert_rel(s.d_ls_mpc, (chi_s - chi_l) / (1.0 + zs), 1e-10, "D_ls", zs);

        /* The mean density inside r200 is 200 rho_crit(z_lens), and the NFW profile
         * integrated to r200 holds M200. */
        double hz = 0.1 * h * sqrt(om * pow(1.0 + zl, 3) + 1.0 - om);
        double rho_c = 3.0 * hz * hz / (8.0 * M_PI * G);
        assert_rel(mass / (4.0 / 3.0 * M_PI * pow(s.r200_kpc, 3)), 200.0 * rho_c, 1e-12, "mean density", 0);
        assert_rel(s.r200_kpc / s.r_s_kpc, c, 1e-14, "concentration", 0);
        double prof[2] = { s.rho_s_msun_kpc3, s.r_s_kpc };
        assert_rel(integrate(nfw_shell_mass, prof, 1e-9 * s.r_s_kpc, s.r200_kpc, 64, 1e-12), mass, 1e-8, "M200", 0);

        double dl = 1e3 * s.d_l_mpc, ds = 1e3 * s.d_s_mpc, dls = 1e3 * s.d_ls_mpc;
        assert_rel(s.sigma_cr_msun_kpc2, ckm * ckm * ds / (4.0 * M_PI * G * dl * dls), 1e-12, "Sigma_cr", 0);
        assert_rel(s.kappa_s, s.rho_s_msun_kpc3 * s.r_s_kpc / s.sigma_cr_msun_kpc2, 1e-14, "kappa_s", 0);
        assert_rel(s.theta_s_arcsec, s.r_s_kpc / dl * 180.0 / M_PI * 3600.0, 1e-12, "theta_s", 0);
}

static void test_einstein_radius_has_mean_kappa_one(void **state)
{
        struct nfw_lens_scalars s;

        assert_int_equal(kiln_nfw_lens_scalars(1e14, 5.0, 0.3, 1.0, 0.7, 0.3, &s), 0);
        assert_true(isfinite(s.theta_e_arcsec) && s.theta_e_arcsec > 0.0);
        double x = s.theta_e_arcsec / s.theta_s_arcsec;
        assert_rel(s.kappa_s * nfw_kbar(x), 1.0, 1e-12, "kappa_s kbar(theta_e)", x);
        assert_rel(s.kappa_s * kbar_cylinder(x), 1.0, 1e-7, "independent kbar(theta_e)", x);

        /* A massive halo: the root lies outside r_s. */
        assert_int_equal(kiln_nfw_lens_scalars(1e16, 10.0, 0.5, 3.0, 0.7, 0.3, &s), 0);
        x = s.theta_e_arcsec / s.theta_s_arcsec;
        assert_rel(s.kappa_s * nfw_kbar(x), 1.0, 1e-12, "kappa_s kbar(theta_e)", x);
}

static void test_einstein_radius_of_weak_lens_follows_the_central_asymptote(void **state)
{
        /* kbar diverges like 2 kappa_s (ln(2/x) - 1/2), so a root always exists. */
        double ks = 0.02;
        double u = kiln_nfw_einstein_ln_x(ks);
        assert_rel(2.0 * ks * (log(2.0) - u - 0.5), 1.0, 1e-12, "asymptote", u);
        ks = 0.05;
        u = kiln_nfw_einstein_ln_x(ks);
        assert_rel(ks * nfw_kbar(exp(u)), 1.0, 1e-12, "kbar", exp(u));
}

static void test_einstein_radius_below_double_range_is_null(void **state)
{
        struct nfw_lens_scalars s;

        /* kappa_s ~ 2e-4: theta_e ~ theta_s e^-2570, not representable. */
        assert_int_equal(kiln_nfw_lens_scalars(1e8, 1.0, 0.3, 1.0, 0.7, 0.3, &s), 0);
        assert_true(s.kappa_s > 0.0 && s.kappa_s < 1e-3);
        assert_true(isnan(s.theta_e_arcsec));
}

static void test_source_behind_lens_is_required(void **state)
{
        struct nfw_lens_scalars s;

        assert_int_equal(kiln_nfw_lens_scalars(1e14, 5.0, 1.0, 1.0, 0.7, 0.3, &s), -EINVAL);
        assert_int_equal(kiln_nfw_lens_scalars(1e14, 5.0, 1.0, 0.5, 0.7, 0.3, &s), -EINVAL);
}

/* ---- the whole CPU run against the independent integrals ---- */

static struct lens_nfw_params halo(int n, uint32_t maps)
{
        struct lens_nfw_params p = {
                .mass = 1e14, .concentration = 5.0, .z_lens = 0.3, .z_source = 1.0, .grid_size = n,
                .fov_arcsec = 60.0, .maps = maps, .h = 0.7, .omega_m = 0.3,
        };
        return p;
}

static const struct kiln_value *find_scalar(const struct kiln_result *r, const char *name)
{
        const struct kiln_value *v = kiln_result_find(r, name);
        assert_non_null(v);
        assert_int_equal(v->type, KILN_V_NUM);
        return v;
}

static bool within_spec(double got, double want)
{
        double err = fabs(got - want);

        return err <= 1e-4 * fabs(want) || (fabs(want) < 1e-2 && err <= 1e-6);
}

/* Independent reference for every pixel. Radii on the grid are r = (delta/2) sqrt(k)
 * with k = a^2 + b^2 for odd a, b (or 0 on the odd-N axes); the reference is computed
 * once per distinct k, in increasing order so that the potential accumulates. */
static void check_grid_against_integrals(int n)
{
        struct lens_nfw_params p = halo(n, LENS_NFW_ALL_MAPS);
        struct kiln_result res = { 0 };

        assert_int_equal(lens_nfw_run_cpu(&p, &res, NULL), 0);
        assert_int_equal(res.n_parts, LENS_NFW_N_MAPS);
        double ks = find_scalar(&res, "kappa_s")->num;
        double ts = find_scalar(&res, "theta_s_arcsec")->num;
        double delta = p.fov_arcsec / n;

        size_t kmax = 2 * (size_t)n * (size_t)n + 1;
        double *kap = calloc(kmax, sizeof(double)), *kb = calloc(kmax, sizeof(double));
        double *hh = calloc(kmax, sizeof(double));
        bool *used = calloc(kmax, sizeof(bool));
        assert_non_null(kap);
        assert_non_null(kb);
        assert_non_null(hh);
        assert_non_null(used);
        for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++) {
                        long a = 2 * j + 1 - n, b = 2 * i + 1 - n;
                        used[a * a + b * b] = true;
                }
        double prev_x = 0.0, h = 0.0;
        for (size_t k = 1; k < kmax; k++) {
                if (!used[k])
                        continue;
                double x = 0.5 * delta * sqrt((double)k) / ts;
                kap[k] = ks * kappa_los(x);
                kb[k] = ks * kbar_cylinder(x);
                h += h_from_alpha(prev_x, x);
                hh[k] = h;
                prev_x = x;
        }

        double worst = 0.0;
        for (int i = 0; i < n; i++) {
                for (int j = 0; j < n; j++) {
                        long a = 2 * j + 1 - n, b = 2 * i + 1 - n;
                        size_t k = (size_t)(a * a + b * b), at = (size_t)i * n + j;
                        double tx = (j + 0.5 - 0.5 * n) * delta, ty = (i + 0.5 - 0.5 * n) * delta;
                        double v[LENS_NFW_N_MAPS];
                        for (int m = 0; m < LENS_NFW_N_MAPS; m++) {
                                float f = ((const float *)res.parts[m].data)[at];
                                assert_false(isnan(f));
                                if (k != 0 || m != NFW_MAP_KAPPA)
                                        assert_true(isfinite(f));
                                v[m] = f;
                        }
                        if (k == 0) {
                                assert_true(isinf(v[NFW_MAP_KAPPA]) && v[NFW_MAP_KAPPA] > 0);
                                assert_true(v[NFW_MAP_GAMMA1] == (double)(float)-ks);
                                assert_true(v[NFW_MAP_GAMMA2] == 0.0);
                                assert_true(v[NFW_MAP_ALPHA_X] == 0.0 && v[NFW_MAP_ALPHA_Y] == 0.0);
                                assert_true(v[NFW_MAP_MU] == 0.0 && v[NFW_MAP_PSI] == 0.0);
                                continue;
                        }
                        double r = hypot(tx, ty), ux = tx / r, uy = ty / r;
                        double gamma = kb[k] - kap[k];
                        double want[LENS_NFW_N_MAPS] = {
                                kap[k],
                                -gamma * (ux * ux - uy * uy),
                                -gamma * 2.0 * ux * uy,
                                kb[k] * tx,
                                kb[k] * ty,
                                1.0 / ((1.0 - kap[k]) * (1.0 - kap[k]) - gamma * gamma),
                                2.0 * ks * ts * ts * hh[k],
                        };
                        for (int m = 0; m < LENS_NFW_N_MAPS; m++) {
                                if (!within_spec(v[m], want[m]))
                                        fail_msg("%s at (%d, %d): got %.9g, want %.12g", lens_nfw_map_names[m], i,
                                                 j, v[m], want[m]);
                                if (fabs(want[m]) >= 1e-2)
                                        worst = fmax(worst, fabs(v[m] - want[m]) / fabs(want[m]));
                        }
                }
        }
        print_message("N = %d: worst relative error %.3g\n", n, worst);
        free(kap);
        free(kb);
        free(hh);
        free(used);
        kiln_result_clear(&res);
}

static void test_run_cpu_matches_integrals_on_odd_grid(void **state)
{
        check_grid_against_integrals(33);
}

static void test_run_cpu_matches_integrals_on_even_grid(void **state)
{
        check_grid_against_integrals(64);
}

static void test_run_cpu_parts_follow_spec_order(void **state)
{
        struct lens_nfw_params p = halo(16, LENS_NFW_PSI | LENS_NFW_KAPPA | LENS_NFW_ALPHA_Y);
        struct kiln_result res = { 0 };
        static const char *const scalars[] = {
                "r200_kpc", "r_s_kpc", "rho_s_msun_kpc3", "sigma_cr_msun_kpc2", "kappa_s",
                "theta_s_arcsec", "d_l_mpc", "d_s_mpc", "d_ls_mpc", "theta_e_arcsec",
        };

        assert_int_equal(lens_nfw_run_cpu(&p, &res, NULL), 0);
        assert_int_equal(res.n_parts, 3);
        assert_string_equal(res.parts[0].name, "kappa");
        assert_string_equal(res.parts[1].name, "alpha_y");
        assert_string_equal(res.parts[2].name, "psi");
        for (int m = 0; m < 3; m++) {
                assert_int_equal(res.parts[m].dtype, KILN_DTYPE_F32);
                assert_int_equal(res.parts[m].ndim, 2);
                assert_int_equal(res.parts[m].shape[0], 16);
                assert_int_equal(res.parts[m].shape[1], 16);
                assert_int_equal(res.parts[m].bytes, 16 * 16 * 4);
        }
        assert_int_equal(kiln_result_bytes(&res), 3 * 16 * 16 * 4);
        assert_int_equal(res.n_scalars, 10);
        for (int k = 0; k < 10; k++) {
                assert_string_equal(res.scalars[k].name, scalars[k]);
                assert_int_equal(res.scalars[k].type, KILN_V_NUM);
        }
        kiln_result_clear(&res);
        assert_int_equal(res.n_parts, 0);
}

static void test_run_cpu_rows_are_row_major_from_the_top_left(void **state)
{
        /* alpha_x grows with the column, alpha_y with the row. */
        struct lens_nfw_params p = halo(8, LENS_NFW_ALPHA_X | LENS_NFW_ALPHA_Y);
        struct kiln_result res = { 0 };

        assert_int_equal(lens_nfw_run_cpu(&p, &res, NULL), 0);
        const float *ax = res.parts[0].data, *ay = res.parts[1].data;
        assert_true(ax[0] < 0 && ay[0] < 0);
        assert_true(ax[7] > 0 && ay[7] < 0);
        assert_true(ax[7 * 8] < 0 && ay[7 * 8] > 0);
        assert_true(ax[1] < 0 && ax[1] == -ax[6]);
        kiln_result_clear(&res);
}

static void test_run_cpu_stops_when_asked(void **state)
{
        struct lens_nfw_params p = halo(64, LENS_NFW_KAPPA);
        struct kiln_result res = { 0 };
        atomic_int stop = 1;
        struct kiln_exec ex = { .stop = &stop };

        assert_int_equal(lens_nfw_run_cpu(&p, &res, &ex), -ECANCELED);
        kiln_result_clear(&res);
}

struct progress_log {
        int calls;
        double last;
        bool monotonic;
};

static void on_progress(struct kiln_exec *ex, double fraction)
{
        struct progress_log *log = ex->opaque;

        if (fraction < log->last)
                log->monotonic = false;
        log->last = fraction;
        log->calls++;
}

/* The CPU path fills a row and its mirror row at once: one report per pair. */
static void test_run_cpu_reports_progress_per_row_pair(void **state)
{
        for (int n = 32; n <= 33; n++) {
                struct lens_nfw_params p = halo(n, LENS_NFW_KAPPA);
                struct kiln_result res = { 0 };
                atomic_int stop = 0;
                struct progress_log log = { .monotonic = true };
                struct kiln_exec ex = { .stop = &stop, .progress = on_progress, .opaque = &log };

                assert_int_equal(lens_nfw_run_cpu(&p, &res, &ex), 0);
                assert_int_equal(log.calls, (n + 1) / 2);
                assert_true(log.monotonic);
                assert_true(log.last == 1.0);
                kiln_result_clear(&res);
        }
}

/* Sharing the radial terms between the four mirrored pixels changes nothing: every
 * map equals nfw_pixel at every pixel, bit for bit, on even and odd grids (an odd
 * one has a pixel at the centre and a row and column on the axes). */
static void test_run_cpu_equals_nfw_pixel_everywhere(void **state)
{
        for (int n = 1; n <= 41; n += 8) {
                for (int even = 0; even < 2; even++) {
                        int g = n + even;
                        struct lens_nfw_params p = halo(g, LENS_NFW_ALL_MAPS);
                        struct kiln_result res = { 0 };
                        struct nfw_lens_scalars s;

                        assert_int_equal(lens_nfw_run_cpu(&p, &res, NULL), 0);
                        assert_int_equal(kiln_nfw_lens_scalars(p.mass, p.concentration, p.z_lens, p.z_source, p.h,
                                                               p.omega_m, &s),
                                         0);
                        assert_int_equal(res.n_parts, LENS_NFW_N_MAPS);
                        double delta = p.fov_arcsec / g, half = 0.5 * g, v[NFW_N_MAPS];
                        for (int i = 0; i < g; i++)
                                for (int j = 0; j < g; j++) {
                                        nfw_pixel((j + 0.5 - half) * delta, (i + 0.5 - half) * delta, s.theta_s_arcsec,
                                                  s.kappa_s, v);
                                        for (int m = 0; m < LENS_NFW_N_MAPS; m++) {
                                                float want = (float)v[m];
                                                const float *got = res.parts[m].data;
                                                assert_memory_equal(&got[(size_t)i * g + j], &want, sizeof(float));
                                        }
                                }
                        kiln_result_clear(&res);
                }
        }
}

static void test_run_cpu_rejects_impossible_params(void **state)
{
        struct lens_nfw_params p = halo(16, LENS_NFW_KAPPA);
        struct kiln_result res = { 0 };

        p.z_source = p.z_lens;
        assert_int_equal(lens_nfw_run_cpu(&p, &res, NULL), -EINVAL);
        kiln_result_clear(&res);
        p = halo(16, 0);
        assert_int_equal(lens_nfw_run_cpu(&p, &res, NULL), -EINVAL);
        kiln_result_clear(&res);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_potential_matches_lenstronomy),
                cmocka_unit_test(test_hessian_matches_lenstronomy),
                cmocka_unit_test(test_distances_match_published_values),
                cmocka_unit_test(test_remembered_distances_equal_fresh_ones),
                cmocka_unit_test(test_kappa_matches_line_of_sight_integral),
                cmocka_unit_test(test_mean_kappa_matches_cylinder_mass),
                cmocka_unit_test(test_potential_matches_radial_integral_of_deflection),
                cmocka_unit_test(test_series_agrees_with_closed_forms_at_band_edges),
                cmocka_unit_test(test_kappa_keeps_full_precision_next_to_x_equal_one),
                cmocka_unit_test(test_extreme_radii_stay_finite),
                cmocka_unit_test(test_centre_pixel_takes_the_limits),
                cmocka_unit_test(test_scalars_follow_the_spec_definitions),
                cmocka_unit_test(test_einstein_radius_has_mean_kappa_one),
                cmocka_unit_test(test_einstein_radius_of_weak_lens_follows_the_central_asymptote),
                cmocka_unit_test(test_einstein_radius_below_double_range_is_null),
                cmocka_unit_test(test_source_behind_lens_is_required),
                cmocka_unit_test(test_run_cpu_matches_integrals_on_odd_grid),
                cmocka_unit_test(test_run_cpu_matches_integrals_on_even_grid),
                cmocka_unit_test(test_run_cpu_parts_follow_spec_order),
                cmocka_unit_test(test_run_cpu_rows_are_row_major_from_the_top_left),
                cmocka_unit_test(test_run_cpu_stops_when_asked),
                cmocka_unit_test(test_run_cpu_reports_progress_per_row_pair),
                cmocka_unit_test(test_run_cpu_equals_nfw_pixel_everywhere),
                cmocka_unit_test(test_run_cpu_rejects_impossible_params),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
