/* placeholder: being written */
extern int placeholder_serialize;
