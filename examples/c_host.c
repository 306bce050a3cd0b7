/* Placeholder: the C example host is being written. */
int main(void) { return 0; }
