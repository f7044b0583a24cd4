/* Which checker the library is built for (AddressSanitizer, ThreadSanitizer,
 * valgrind's client requests), and their headers: stack.c and fiber.c
 * annotate fiber stacks and switches for each. */
#ifndef RILL_SANITIZE_H
#define RILL_SANITIZE_H

#if defined(__SANITIZE_ADDRESS__)
#define RILL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RILL_ASAN 1
#endif
#endif

#ifdef RILL_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#if defined(__SANITIZE_THREAD__)
#define RILL_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define RILL_TSAN 1
#endif
#endif

#ifdef RILL_TSAN
#include <sanitizer/tsan_interface.h>
#endif

#ifdef RILL_VALGRIND
#include <valgrind/valgrind.h>
#else
#define VALGRIND_STACK_REGISTER(lo, hi) 0u
#define VALGRIND_STACK_DEREGISTER(id) ((void)(id))
#endif

#endif
