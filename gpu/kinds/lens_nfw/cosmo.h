/* Flat Lambda-CDM distances and the derived scalars of an NFW lens.
 *
 * Units: distances in Mpc (angular-diameter) or kpc, densities in Msun/kpc^3,
 * surface densities in Msun/kpc^2, angles in arcsec. Radiation is neglected:
 * E(z) = sqrt(Om (1+z)^3 + 1 - Om). */
#pragma once

#define KILN_C_KM_S 299792.458             /* speed of light, km/s */
#define KILN_G_KPC 4.30091727e-6           /* G in kpc (km/s)^2 / Msun */
#define KILN_ARCSEC_PER_RAD 206264.80624709636

/* The result scalars of lens.nfw (SPEC section 1.1). theta_e_arcsec is NaN when it
 * is null. */
struct nfw_lens_scalars {
        double r200_kpc;
        double r_s_kpc;
        double rho_s_msun_kpc3;
        double sigma_cr_msun_kpc2;
        double kappa_s;
        double theta_s_arcsec;
        double d_l_mpc;
        double d_s_mpc;
        double d_ls_mpc;
        double theta_e_arcsec;
};

/* E(z) = H(z)/H0 for flat Lambda-CDM with matter density omega_m. */
double kiln_cosmo_e(double z, double omega_m);

/* Line-of-sight comoving distance to redshift z (>= 0) in Mpc, by adaptive Simpson
 * integration of c/H(z) to ~1e-13 relative; each thread remembers the integral for
 * the last few (z, omega_m) it was asked, bit for bit. Returns >= 0 and writes *ret_mpc, or
 * -EINVAL for a negative or non-finite z or non-positive h. */
int kiln_cosmo_comoving_mpc(double z, double h, double omega_m, double *ret_mpc);

/* Critical density 3 H(z)^2 / (8 pi G) in Msun/kpc^3. */
double kiln_cosmo_rho_crit(double z, double h, double omega_m);

/* Einstein radius in units of theta_s: the x where kbar(x) = 1 for convergence scale
 * kappa_s > 0. kbar diverges logarithmically at x -> 0 and falls to 0 at large x, so
 * the root always exists; it is found by bisection on ln x (to double precision), or
 * from the small-x asymptote kbar = 2 kappa_s (ln(2/x) - 1/2) when that puts it below
 * x = e^-40. Returns ln x (which may be far below the double range of x itself). */
double kiln_nfw_einstein_ln_x(double kappa_s);

/* Computes every lens.nfw scalar for halo mass M200 (Msun), concentration c200,
 * lens and source redshifts and flat Lambda-CDM (h, omega_m). theta_e_arcsec is the
 * Einstein radius, or NaN (null) only when it is too small to be represented as a
 * double (below ~1e-308 arcsec, which happens for very light halos). Returns >= 0
 * and fills *ret, or -EINVAL when z_source <= z_lens or an input is outside the
 * domain of the formulas. */
int kiln_nfw_lens_scalars(double mass, double concentration, double z_lens, double z_source, double h,
                          double omega_m, struct nfw_lens_scalars *ret);
