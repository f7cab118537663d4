// QLAM_ISA_CLONES: a function compiled once per x86 instruction set (AVX-512,
// AVX2 + FMA, baseline) and picked at load time by the CPU's features. `flatten`
// inlines everything it calls into each clone, so plain loops in those callees
// are vectorised for the clone's ISA; nothing else in the library is built with
// wider instructions (a wheel must still load on any x86-64).
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(QLAM_NO_CLONES)
#define QLAM_ISA_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"), flatten))
#else
#define QLAM_ISA_CLONES __attribute__((flatten))
#endif
