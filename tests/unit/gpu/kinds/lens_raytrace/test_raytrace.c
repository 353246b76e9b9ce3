/* lens.raytrace on the CPU: a source on the axis makes an Einstein ring at theta_E
 * (SPEC 1.2), an off-axis source breaks it, supersampling averages sub-rays, and
 * the usual contract (stop flag, bad params) holds. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "kind.h"
#include "lens_nfw/cosmo.h"
#include "lens_raytrace/lens_raytrace.h"
#include "lens_raytrace/raytrace_math.h"

static struct lens_raytrace_params cluster(int n, double sx, double sigma, int ss)
{
        return (struct lens_raytrace_params){
                .mass = 1e15, .concentration = 5, .z_lens = 0.3, .z_source = 1.0, .grid_size = n,
                .fov_arcsec = 120, .h = 0.7, .omega_m = 0.3, .src_x = sx, .src_y = 0,
                .src_sigma = sigma, .supersample = ss,
        };
}

static double scalar(const struct kiln_result *r, const char *name)
{
        const struct kiln_value *v = kiln_result_find(r, name);
        if (!v || v->type != KILN_V_NUM)
                fail_msg("no number %s", name);
        return v->num;
}

/* Mean of the image over the annulus |theta - r| < half_width (arcsec). */
static double annulus_mean(const float *img, int n, double delta, double r, double half_width)
{
        double sum = 0.0;
        int count = 0;
        for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++) {
                        double t = hypot((j + 0.5 - 0.5 * n) * delta, (i + 0.5 - 0.5 * n) * delta);
                        if (fabs(t - r) < half_width) {
                                sum += img[i * n + j];
                                count++;
                        }
                }
        return count ? sum / count : 0.0;
}

static void test_a_source_on_the_axis_makes_a_ring_at_theta_e(void **state)
{
        struct lens_raytrace_params p = cluster(256, 0.0, 0.2, 4);
        struct kiln_result r = { 0 };
        assert_int_equal(lens_raytrace_run_cpu(&p, &r, NULL), 0);
        assert_int_equal(r.n_parts, 1);
        assert_string_equal(r.parts[0].name, "image");
        const float *img = r.parts[0].data;
        double delta = p.fov_arcsec / p.grid_size;
        double theta_e = scalar(&r, "theta_e_arcsec");
        assert_true(theta_e > 5 * delta && theta_e < 0.45 * p.fov_arcsec);

        /* The brightest ring of pixels is the one at theta_E. */
        double best_r = 0, best = -1;
        for (double rr = delta; rr < 0.5 * p.fov_arcsec; rr += 0.5 * delta) {
                double m = annulus_mean(img, p.grid_size, delta, rr, 0.5 * delta);
                if (m > best) {
                        best = m;
                        best_r = rr;
                }
        }
        assert_true(fabs(best_r - theta_e) < 1.5 * delta);
        double ring = annulus_mean(img, p.grid_size, delta, theta_e, delta);
        assert_true(ring > 0.1);
        assert_true(ring > 20 * annulus_mean(img, p.grid_size, delta, 0.6 * theta_e, delta));
        assert_true(ring > 20 * annulus_mean(img, p.grid_size, delta, 1.5 * theta_e, delta));
        kiln_result_clear(&r);
}

static void test_an_off_axis_source_breaks_the_ring(void **state)
{
        struct lens_raytrace_params p = cluster(128, 4.0, 0.3, 2);
        struct kiln_result r = { 0 };
        assert_int_equal(lens_raytrace_run_cpu(&p, &r, NULL), 0);
        const float *img = r.parts[0].data;
        int n = p.grid_size;
        double delta = p.fov_arcsec / n, theta_e = scalar(&r, "theta_e_arcsec");
        /* Images form along the source's direction (x); the ring points along y,
         * bright for a source on the axis, stay dark. */
        double x_max = 0, y_max = 0;
        for (int j = 0; j < n; j++)
                for (int d = -1; d <= 1; d++)
                        x_max = fmax(x_max, img[(n / 2 + d) * n + j]);
        int top = (int)(0.5 * n + theta_e / delta), bottom = (int)(0.5 * n - theta_e / delta);
        for (int d = -3; d <= 3; d++)
                for (int c = -1; c <= 1; c++) {
                        y_max = fmax(y_max, img[(top + d) * n + n / 2 + c]);
                        y_max = fmax(y_max, img[(bottom + d) * n + n / 2 + c]);
                }
        assert_true(x_max > 0.2);
        assert_true(y_max < 1e-3);
        kiln_result_clear(&r);
}

static void test_a_pixel_is_the_mean_of_its_sub_rays(void **state)
{
        struct nfw_lens_scalars s;
        assert_int_equal(kiln_nfw_lens_scalars(1e15, 5, 0.3, 1.0, 0.7, 0.3, &s), 0);
        double delta = 0.5, tx = 10.25, ty = -3.75, sum = 0;
        for (int a = 0; a < 2; a++)
                for (int b = 0; b < 2; b++)
                        sum += raytrace_pixel(tx + (b - 0.5) * 0.5 * delta, ty + (a - 0.5) * 0.5 * delta, delta, 1,
                                              s.theta_s_arcsec, s.kappa_s, 1.0, 2.0, 3.0);
        double v = raytrace_pixel(tx, ty, delta, 2, s.theta_s_arcsec, s.kappa_s, 1.0, 2.0, 3.0);
        assert_true(fabs(v - 0.25 * sum) < 1e-14);
        /* Without a lens (kappa_s = 0) a pixel samples the source where it is. */
        assert_true(fabs(raytrace_pixel(1.0, 2.0, 1e-9, 1, 1.0, 0.0, 1.0, 2.0, 3.0) - 1.0) < 1e-12);
}

static void test_a_raised_stop_flag_cancels_the_run(void **state)
{
        struct lens_raytrace_params p = cluster(64, 0, 1, 1);
        struct kiln_result r = { 0 };
        atomic_int stop = 1;
        struct kiln_exec ex = { .stop = &stop };
        assert_int_equal(lens_raytrace_run_cpu(&p, &r, &ex), -ECANCELED);
        kiln_result_clear(&r);
}

static void test_unusable_params_are_rejected(void **state)
{
        struct kiln_result r = { 0 };
        struct lens_raytrace_params p = cluster(64, 0, 0, 2);
        assert_int_equal(lens_raytrace_run_cpu(&p, &r, NULL), -EINVAL);
        p = cluster(64, 0, 1, 9);
        assert_int_equal(lens_raytrace_run_cpu(&p, &r, NULL), -EINVAL);
        p = cluster(64, 0, 1, 2);
        p.z_source = 0.2;
        assert_int_equal(lens_raytrace_run_cpu(&p, &r, NULL), -EINVAL);
        kiln_result_clear(&r);
}

static void test_the_kind_is_registered(void **state)
{
        const struct kiln_kind *k = kiln_kind_find("lens.raytrace");
        assert_non_null(k);
        assert_ptr_equal(k, &kiln_kind_lens_raytrace);
        struct lens_raytrace_params p = cluster(100, 0, 1, 2);
        assert_int_equal(kiln_kind_result_bytes(k, &p, NULL, 0, NULL), 100 * 100 * 4);
        /* The descriptor's run_cpu is the same computation as lens_raytrace_run_cpu. */
        struct kiln_result a = { 0 }, b = { 0 };
        struct kiln_task t = { .params = &p, .result = &a };
        p.grid_size = 16;
        assert_int_equal(k->run_cpu(&t), 0);
        assert_int_equal(lens_raytrace_run_cpu(&p, &b, NULL), 0);
        assert_int_equal(a.n_parts, 1);
        assert_memory_equal(a.parts[0].data, b.parts[0].data, b.parts[0].bytes);
        kiln_result_clear(&a);
        kiln_result_clear(&b);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_a_source_on_the_axis_makes_a_ring_at_theta_e),
                cmocka_unit_test(test_an_off_axis_source_breaks_the_ring),
                cmocka_unit_test(test_a_pixel_is_the_mean_of_its_sub_rays),
                cmocka_unit_test(test_a_raised_stop_flag_cancels_the_run),
                cmocka_unit_test(test_unusable_params_are_rejected),
                cmocka_unit_test(test_the_kind_is_registered),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
