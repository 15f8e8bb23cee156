static inline __attribute__((always_inline)) int inner(volatile int *p) {
	return *p + 1;
}

__attribute__((noinline)) int leaf(volatile int *p)
{
	int x = inner(p);
	return x * 2;
}

__attribute__((noinline)) int caller(volatile int *p)
{
	int y = leaf(p);
	return y + 3;
}

int main(void)
{
	volatile int v = 1;
	return caller(&v);
}
